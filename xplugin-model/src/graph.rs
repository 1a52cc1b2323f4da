//! The dependency resolver: which plugins of one side load, in which order,
//! and why each of the others cannot.
//!
//! Input is one side's plugin set ([`ResolveInput`]): usually what is
//! installed merged with what a package brings ([`merge_installed`]), each
//! plugin carrying any failure found by earlier checks (license, version
//! compatibility, architecture) in [`Node::failure`]. Resolve client and
//! controller plugins in separate calls: `depend` never crosses sides, and a
//! client plugin's `ctrlDepend` is checked against
//! [`ResolveInput::running_controller`], the set of controller plugins the
//! controller reports as running.
//!
//! Guarantees of [`resolve`]:
//!
//! * **Order.** `load_order` lists every plugin that can load, each after all
//!   of its dependencies; among plugins whose dependencies are all loaded the
//!   name that sorts first comes first, so equal inputs (in any order) give
//!   equal outputs. `stop_order` is its reverse.
//! * **Isolation.** A plugin is blocked only by its own failure, being
//!   disabled, its own unsatisfiable dependency entries, membership in a
//!   cycle, or a blocked dependency. Every other plugin loads.
//! * **Reasons.** Each blocked plugin gets one primary [`BlockReason`] and a
//!   message listing all of its problems: the primary one with the chain to
//!   its root cause,
//!   `c cannot load: depends on b, which depends on a, which failed: license expired`,
//!   the others with their root cause only
//!   (`depends on d, which cannot load because a failed: license expired`).
//!   Every member of a cycle is reported as [`BlockReason::Cycle`] with a
//!   concrete cycle through it, `a -> b -> c -> a`; plugins that merely
//!   depend on a cycle are [`BlockReason::DependencyFailed`].
//!
//! Priority of a plugin's own reasons: duplicate name, then disabled, then
//! its pre-failure, then cycle membership, then dependency problems in
//! manifest order (`depend` before `ctrlDepend`). For one dependency entry:
//! missing, then disabled, then version out of range, then blocked.
//!
//! Cost: O(V log V + E) plus, for cycle members, the length of the walk
//! used to find their cycle. Names are interned to indices; chains and
//! cycles in messages are capped ([`MAX_CHAIN`], [`MAX_CYCLE_SHOWN`]) so a
//! pathological 10 000-plugin chain cannot make the output quadratic. A
//! [`Blocked`] holds only indices into a record shared by the resolution;
//! its reason, message and hint are rendered when asked for (each in
//! O(`MAX_CHAIN` + `MAX_CYCLE_SHOWN`) plus the plugin's own entries), so
//! thousands of blocked plugins cost no text until they are reported.
//! `load_order`, `stop_order` and `blocked` refer to the resolution's one
//! copy of the names by index, with no string per plugin.

mod explain;
mod order;

use crate::code::ProblemCode;
use crate::manifest::{Dependency, Manifest, Side};
use crate::problem::{Problem, Problems};
use crate::version::{Version, VersionReq};
use explain::{Explain, Issue, Names, Own, Rec};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

pub use explain::Blocked;
pub use order::{BlockedPlugins, OrderIter, PluginOrder};

/// Most plugins named in one dependency chain; longer chains keep the first
/// `MAX_CHAIN - 1` and the root cause and count the rest in `elided`.
pub const MAX_CHAIN: usize = 8;

/// Most plugins named in one cycle; longer cycles keep the first ones and
/// give the full `length`.
pub const MAX_CYCLE_SHOWN: usize = 32;

/// One plugin as the resolver sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Plugin name (unique within the side).
    pub name: String,
    /// Plugin version, checked against dependents' ranges.
    pub version: Version,
    /// Client or controller.
    pub side: Side,
    /// False for a controller plugin with `enable: false`: not loaded, and
    /// its dependents cannot load. Client plugins always load (their
    /// `enable` only decides whether they are enabled afterwards).
    pub load: bool,
    /// Same-side dependencies.
    pub depend: Vec<Dependency>,
    /// Controller plugins a client plugin needs (ignored on the controller side).
    pub ctrl_depend: Vec<Dependency>,
    /// A failure found before resolving ("license expired", "incompatible: ..."),
    /// which blocks the plugin and its dependents.
    pub failure: Option<String>,
}

impl Node {
    /// The resolver's view of a manifest, without failure.
    pub fn from_manifest(m: &Manifest) -> Node {
        Node {
            name: m.name.clone(),
            version: m.version.clone(),
            side: m.side,
            load: m.loads(),
            depend: m.depend.clone(),
            ctrl_depend: m.ctrl_depend.clone(),
            failure: None,
        }
    }

    /// The same node with a pre-failure.
    pub fn with_failure(mut self, failure: impl Into<String>) -> Node {
        self.failure = Some(failure.into());
        self
    }
}

/// What [`resolve`] works on: one side's plugins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolveInput {
    /// The plugins of one side.
    pub plugins: Vec<Node>,
    /// Controller plugins running on the controller, by name, for client
    /// `ctrlDepend`. `None` means unknown (no answer from the controller):
    /// then no `ctrlDepend` can be satisfied, and the reason says so.
    pub running_controller: Option<BTreeMap<String, Version>>,
}

/// Why a plugin cannot load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlockReason {
    /// An earlier check failed (license, compatibility, ...).
    Failed(String),
    /// A controller plugin with `enable: false`.
    Disabled,
    /// More than one plugin in the set has this name.
    DuplicateName {
        /// How many.
        count: usize,
    },
    /// A `depend` entry names a plugin that is not in the set.
    MissingDependency {
        /// The missing plugin.
        dep: String,
    },
    /// A `depend` entry names a disabled plugin.
    DependencyDisabled {
        /// The disabled plugin.
        dep: String,
    },
    /// A `depend` entry's version range excludes the plugin present.
    DependencyOutOfRange {
        /// The plugin depended on.
        dep: String,
        /// The range required.
        required: VersionReq,
        /// The version present.
        found: Version,
    },
    /// A dependency cannot load itself.
    DependencyFailed {
        /// The dependency.
        dep: String,
        /// Plugins from `dep` down to where the problem starts (the last
        /// one is failed, disabled, missing, out of range or in a cycle).
        chain: Vec<String>,
        /// Plugins left out of `chain` between its last two entries.
        elided: usize,
        /// What is wrong with the last plugin of `chain`, e.g.
        /// `failed: license expired` or `is not installed`.
        cause: String,
    },
    /// The plugin is in a dependency cycle.
    Cycle {
        /// A cycle through this plugin, starting with it (the closing
        /// `-> it` is implied); at most [`MAX_CYCLE_SHOWN`] names.
        members: Vec<String>,
        /// The number of plugins in the cycle.
        length: usize,
    },
    /// A `ctrlDepend` entry names a controller plugin that is not running.
    MissingControllerDependency {
        /// The controller plugin.
        dep: String,
    },
    /// A `ctrlDepend` entry's range excludes the running controller plugin.
    ControllerDependencyOutOfRange {
        /// The controller plugin.
        dep: String,
        /// The range required.
        required: VersionReq,
        /// The version running.
        found: Version,
    },
    /// A `ctrlDepend` entry cannot be checked: the controller's running set
    /// is unknown.
    ControllerStateUnknown {
        /// The controller plugin.
        dep: String,
    },
}

impl BlockReason {
    /// The problem code of this reason. Being disabled, depending on a
    /// disabled plugin and an unknown controller state are warnings: nothing
    /// is wrong with the plugin itself.
    pub fn code(&self) -> ProblemCode {
        match self {
            BlockReason::Failed(_) => ProblemCode::GraphPluginFailed,
            BlockReason::Disabled => ProblemCode::GraphDisabled,
            BlockReason::DuplicateName { .. } => ProblemCode::GraphDuplicateName,
            BlockReason::MissingDependency { .. } => ProblemCode::GraphMissingDependency,
            BlockReason::DependencyDisabled { .. } => ProblemCode::GraphDependencyDisabled,
            BlockReason::DependencyOutOfRange { .. } => ProblemCode::GraphDependencyVersion,
            BlockReason::DependencyFailed { .. } => ProblemCode::GraphDependencyFailed,
            BlockReason::Cycle { .. } => ProblemCode::GraphCycle,
            BlockReason::MissingControllerDependency { .. } => {
                ProblemCode::GraphMissingCtrlDependency
            }
            BlockReason::ControllerDependencyOutOfRange { .. } => {
                ProblemCode::GraphCtrlDependencyVersion
            }
            BlockReason::ControllerStateUnknown { .. } => ProblemCode::GraphCtrlStateUnknown,
        }
    }
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// Plugins to load, dependencies first.
    pub load_order: PluginOrder,
    /// `load_order` reversed: dependents stop first.
    pub stop_order: PluginOrder,
    /// Plugins that cannot load, by name.
    pub blocked: BlockedPlugins,
}

impl Resolution {
    /// True if `name` is in the load order.
    pub fn loads(&self, name: &str) -> bool {
        self.load_order.contains(name)
    }
}

const NONE: u32 = u32::MAX;

/// Word-at-a-time multiplicative hash (FxHash style) with a 64-bit
/// finalizer, for interning plugin names. SipHash costs more than the rest
/// of the resolver together; the per-process random seed keeps colliding
/// names from being precomputed, and the number of names is bounded by
/// what a host installs.
#[derive(Clone, Copy)]
struct NameHasher(u64);

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64: spreads entropy into the high bits hashbrown
        // uses for its control bytes and the low bits it uses for buckets.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[derive(Clone, Copy)]
struct NameHasherBuilder(u64);

impl NameHasherBuilder {
    fn new() -> NameHasherBuilder {
        NameHasherBuilder(RandomState::new().hash_one(0x9e37_79b9_u32))
    }
}

impl BuildHasher for NameHasherBuilder {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(self.0)
    }
}

struct Graph<'a> {
    nodes: Vec<&'a Node>,
    /// Number of input plugins with this name (>1 = duplicate).
    copies: Vec<usize>,
    /// CSR: `depend` targets of node i are `targets[start[i]..start[i+1]]`,
    /// one per `depend` entry in order, `NONE` for a missing plugin.
    start: Vec<u32>,
    targets: Vec<u32>,
    /// Reverse CSR over present targets: who depends on node i.
    rstart: Vec<u32>,
    rsources: Vec<u32>,
}

impl<'a> Graph<'a> {
    fn build(plugins: &'a [Node]) -> Graph<'a> {
        // Names often share a long prefix ("vendor.plugin-"): the 8 bytes
        // after the prefix common to all, as one big-endian integer, order
        // like the names themselves wherever they differ, so almost every
        // comparison of the sort is one integer compare instead of a memcmp
        // call through a pointer.
        let first = plugins.first().map_or(&[][..], |p| p.name.as_bytes());
        let common = plugins.iter().fold(first.len(), |len, p| {
            first[..len]
                .iter()
                .zip(p.name.as_bytes())
                .take_while(|(a, b)| a == b)
                .count()
        });
        let key = |name: &str| {
            let mut word = [0u8; 8];
            let rest = name.as_bytes().get(common..).unwrap_or_default();
            let take = rest.len().min(8);
            word[..take].copy_from_slice(&rest[..take]);
            u64::from_be_bytes(word)
        };
        let mut sorted: Vec<(u64, &str, &Node)> = plugins
            .iter()
            .map(|p| (key(&p.name), p.name.as_str(), p))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut nodes: Vec<&Node> = Vec::with_capacity(sorted.len());
        let mut copies: Vec<usize> = Vec::with_capacity(sorted.len());
        for (_, _, node) in sorted {
            match (nodes.last(), copies.last_mut()) {
                (Some(last), Some(count)) if last.name == node.name => *count += 1,
                _ => {
                    nodes.push(node);
                    copies.push(1);
                }
            }
        }
        let mut index: HashMap<&str, u32, NameHasherBuilder> =
            HashMap::with_capacity_and_hasher(nodes.len(), NameHasherBuilder::new());
        for (i, n) in nodes.iter().enumerate() {
            index.insert(n.name.as_str(), i as u32);
        }
        let mut start = Vec::with_capacity(nodes.len() + 1);
        let mut targets = Vec::new();
        start.push(0u32);
        for (i, node) in nodes.iter().enumerate() {
            // A duplicate name's edges depend on which copy sorted first;
            // it is blocked anyway, so it gets none and stays deterministic.
            if copies[i] == 1 {
                for dep in &node.depend {
                    targets.push(index.get(dep.name.as_str()).copied().unwrap_or(NONE));
                }
            }
            start.push(targets.len() as u32);
        }
        // Counting sort of the edges by target gives the reverse CSR with
        // sources in index order.
        let n = nodes.len();
        let mut rstart = vec![0u32; n + 1];
        for &t in &targets {
            if t != NONE {
                rstart[t as usize + 1] += 1;
            }
        }
        for i in 0..n {
            rstart[i + 1] += rstart[i];
        }
        let mut fill = rstart.clone();
        let mut rsources = vec![0u32; rstart[n] as usize];
        for s in 0..n {
            for &t in &targets[start[s] as usize..start[s + 1] as usize] {
                if t != NONE {
                    rsources[fill[t as usize] as usize] = s as u32;
                    fill[t as usize] += 1;
                }
            }
        }
        Graph {
            nodes,
            copies,
            start,
            targets,
            rstart,
            rsources,
        }
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn deps(&self, i: usize) -> &[u32] {
        &self.targets[self.start[i] as usize..self.start[i + 1] as usize]
    }

    fn dependents(&self, i: usize) -> &[u32] {
        &self.rsources[self.rstart[i] as usize..self.rstart[i + 1] as usize]
    }

    /// Strongly connected components (iterative Tarjan), in the order they
    /// complete: every component after all components it depends on.
    /// Returns the component id per node and the members of every
    /// component, flattened: component c is `members[bounds[c]..bounds[c+1]]`,
    /// sorted.
    fn sccs(&self) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let n = self.len();
        let mut index = vec![NONE; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut comp = vec![NONE; n];
        let mut members: Vec<u32> = Vec::with_capacity(n);
        let mut bounds: Vec<u32> = vec![0];
        let mut call: Vec<(u32, u32)> = Vec::new();
        let mut counter = 0u32;
        for root in 0..n {
            if index[root] != NONE {
                continue;
            }
            index[root] = counter;
            low[root] = counter;
            counter += 1;
            stack.push(root as u32);
            on_stack[root] = true;
            call.push((root as u32, self.start[root]));
            while let Some(&mut (v, ref mut pos)) = call.last_mut() {
                let v = v as usize;
                if *pos < self.start[v + 1] {
                    let t = self.targets[*pos as usize];
                    *pos += 1;
                    if t == NONE {
                        continue;
                    }
                    let t = t as usize;
                    if index[t] == NONE {
                        index[t] = counter;
                        low[t] = counter;
                        counter += 1;
                        stack.push(t as u32);
                        on_stack[t] = true;
                        call.push((t as u32, self.start[t]));
                    } else if on_stack[t] {
                        low[v] = low[v].min(index[t]);
                    }
                    continue;
                }
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    let p = parent as usize;
                    low[p] = low[p].min(low[v]);
                }
                if low[v] == index[v] {
                    let id = (bounds.len() - 1) as u32;
                    let first = members.len();
                    while let Some(w) = stack.pop() {
                        on_stack[w as usize] = false;
                        comp[w as usize] = id;
                        members.push(w);
                        if w as usize == v {
                            break;
                        }
                    }
                    members[first..].sort_unstable();
                    bounds.push(members.len() as u32);
                }
            }
        }
        (comp, members, bounds)
    }
}

/// Finds, for every member of a non-trivial component, one simple cycle
/// through it: walk member -> root (shortest, backwards BFS tree), then
/// root -> member (shortest, forward BFS tree), and erase loops.
struct CycleFinder {
    parent_fwd: Vec<u32>,
    parent_bwd: Vec<u32>,
    /// Position in the loop-erasure stack, or NONE.
    position: Vec<u32>,
    /// Buffers reused for every member, so a big component costs no
    /// allocation per member.
    queue: std::collections::VecDeque<u32>,
    walk: Vec<u32>,
    fwd: Vec<u32>,
    path: Vec<u32>,
}

impl CycleFinder {
    fn new(n: usize) -> CycleFinder {
        CycleFinder {
            parent_fwd: vec![NONE; n],
            parent_bwd: vec![NONE; n],
            position: vec![NONE; n],
            queue: std::collections::VecDeque::new(),
            walk: Vec::new(),
            fwd: Vec::new(),
            path: Vec::new(),
        }
    }

    /// Records a cycle for each of the `members` (sorted) of component
    /// `id` in `ex` (the first [`MAX_CYCLE_SHOWN`] names and the length),
    /// and returns the index of the first one; member k's is that plus k.
    fn cycles(
        &mut self,
        g: &Graph<'_>,
        comp: &[u32],
        id: u32,
        members: &[u32],
        ex: &mut Explain,
    ) -> u32 {
        let base = ex.cycles.len() as u32;
        let Some(&root) = members.first() else {
            return base;
        };
        let in_comp = |t: u32| t != NONE && comp[t as usize] == id;
        // Forward BFS: parent_fwd[x] = predecessor of x on a shortest root -> x path.
        self.queue.push_back(root);
        self.parent_fwd[root as usize] = root;
        while let Some(u) = self.queue.pop_front() {
            for &t in g.deps(u as usize) {
                if in_comp(t) && self.parent_fwd[t as usize] == NONE {
                    self.parent_fwd[t as usize] = u;
                    self.queue.push_back(t);
                }
            }
        }
        // Backward BFS: parent_bwd[x] = next hop on a shortest x -> root path.
        self.queue.push_back(root);
        self.parent_bwd[root as usize] = root;
        while let Some(u) = self.queue.pop_front() {
            for &s in g.dependents(u as usize) {
                if in_comp(s) && self.parent_bwd[s as usize] == NONE {
                    self.parent_bwd[s as usize] = u;
                    self.queue.push_back(s);
                }
            }
        }
        for &x in members {
            self.walk.clear();
            if g.deps(x as usize).contains(&x) {
                self.walk.push(x);
            } else if x == root {
                // root -> first successor in the component -> ... -> root.
                let next = g.deps(x as usize).iter().copied().find(|&t| in_comp(t));
                self.walk.push(x);
                let mut v = next.unwrap_or(x);
                while v != root {
                    self.walk.push(v);
                    v = self.parent_bwd[v as usize];
                }
            } else {
                let mut v = x;
                while v != root {
                    self.walk.push(v);
                    v = self.parent_bwd[v as usize];
                }
                self.fwd.clear();
                let mut v = x;
                while v != root {
                    v = self.parent_fwd[v as usize];
                    self.fwd.push(v);
                }
                // fwd is x's ancestors up to root; walk root -> ... -> before x.
                self.walk.extend(self.fwd.iter().rev());
            }
            self.erase_loops();
            let shown = self.path.len().min(MAX_CYCLE_SHOWN);
            ex.cycles.push((
                ex.cycle_nodes.len() as u32,
                shown as u32,
                self.path.len() as u32,
            ));
            ex.cycle_nodes.extend_from_slice(&self.path[..shown]);
        }
        base
    }

    /// `walk` without its loops, into `path`.
    fn erase_loops(&mut self) {
        self.path.clear();
        for &v in &self.walk {
            let p = self.position[v as usize];
            if p != NONE {
                for w in self.path.drain(p as usize + 1..) {
                    self.position[w as usize] = NONE;
                }
            } else {
                self.position[v as usize] = self.path.len() as u32;
                self.path.push(v);
            }
        }
        for &w in &self.path {
            self.position[w as usize] = NONE;
        }
    }
}

/// Resolves one side's plugin set. See the [module documentation](self).
pub fn resolve(input: &ResolveInput) -> Resolution {
    let g = Graph::build(&input.plugins);
    let n = g.len();
    let (comp, members, bounds) = g.sccs();
    let mut finder = CycleFinder::new(n);
    let mut ex = Explain::new(Names::new(g.nodes.iter().map(|node| node.name.as_str())));

    for (id, range) in bounds.windows(2).enumerate() {
        let id = id as u32;
        let comp_members = &members[range[0] as usize..range[1] as usize];
        let cyclic = comp_members.len() > 1
            || comp_members
                .first()
                .is_some_and(|&m| g.deps(m as usize).contains(&m));
        let first_cycle = if cyclic {
            finder.cycles(&g, &comp, id, comp_members, &mut ex)
        } else {
            NONE
        };
        for (k, &m) in comp_members.iter().enumerate() {
            let cycle = if cyclic { first_cycle + k as u32 } else { NONE };
            check_node(&g, input, &mut ex, &comp, id, m as usize, cycle);
        }
    }

    // Kahn over loadable plugins, smallest name (= index) first.
    let recs = &ex.recs;
    let mut pending = vec![0u32; n];
    let mut ready: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
    for i in 0..n {
        if recs[i].blocked {
            continue;
        }
        pending[i] = g.deps(i).len() as u32;
        if pending[i] == 0 {
            ready.push(Reverse(i as u32));
        }
    }
    let mut load_order: Vec<u32> = Vec::with_capacity(n);
    while let Some(Reverse(v)) = ready.pop() {
        load_order.push(v);
        for &s in g.dependents(v as usize) {
            let s = s as usize;
            if !recs[s].blocked {
                pending[s] -= 1;
                if pending[s] == 0 {
                    ready.push(Reverse(s as u32));
                }
            }
        }
    }
    let stop_order: Vec<u32> = load_order.iter().rev().copied().collect();
    let ex = Arc::new(ex);
    let blocked = (0..n as u32)
        .filter(|&i| ex.recs[i as usize].blocked)
        .map(|i| Blocked::new(Arc::clone(&ex), i))
        .collect();
    Resolution {
        load_order: PluginOrder::new(Arc::clone(&ex), load_order),
        stop_order: PluginOrder::new(Arc::clone(&ex), stop_order),
        blocked: BlockedPlugins::new(blocked),
    }
}

/// Decides whether plugin `i` (in component `id`, on `cycle` or `NONE`)
/// is blocked and records why in `ex`. All components it depends on are
/// already decided there.
fn check_node(
    g: &Graph<'_>,
    input: &ResolveInput,
    ex: &mut Explain,
    comp: &[u32],
    id: u32,
    i: usize,
    cycle: u32,
) {
    let node = g.nodes[i];
    // A duplicate name or being disabled decide alone; a pre-failure and
    // cycle membership are reported with the dependency problems after them.
    let own = if g.copies[i] > 1 {
        Own::Duplicate(g.copies[i] as u32)
    } else if !node.load {
        Own::Disabled
    } else if let Some(f) = &node.failure {
        Own::Failed(ex.push_string(f))
    } else {
        Own::None
    };
    let mut rec = Rec {
        blocked: own != Own::None || cycle != NONE,
        own,
        cycle,
        first: ex.issues.len() as u32,
        end: ex.issues.len() as u32,
        via: NONE,
        len: 0,
        last: i as u32,
    };
    if !matches!(own, Own::Duplicate(_) | Own::Disabled) {
        for (dep, &t) in node.depend.iter().zip(g.deps(i)) {
            if t != NONE && comp[t as usize] == id {
                continue; // inside the cycle, already reported
            }
            if let Some(issue) = depend_issue(g, ex, dep, t) {
                ex.issues.push(issue);
            }
        }
        if node.side == Side::Client {
            for dep in &node.ctrl_depend {
                if let Some(issue) = ctrl_issue(ex, input.running_controller.as_ref(), dep) {
                    ex.issues.push(issue);
                }
            }
        }
        rec.end = ex.issues.len() as u32;
        if !rec.blocked {
            // The first issue is the primary reason, and the chain a
            // dependent sees continues through it.
            match ex.issues.get(rec.first as usize) {
                Some(&Issue::Blocked { node: t }) => {
                    let target = ex.recs[t as usize];
                    rec.via = t;
                    rec.len = 1 + target.len;
                    rec.last = target.last;
                    rec.blocked = true;
                }
                Some(_) => {
                    rec.len = 1;
                    rec.blocked = true;
                }
                None => {}
            }
        }
    }
    ex.recs[i] = rec;
}

fn depend_issue(g: &Graph<'_>, ex: &mut Explain, dep: &Dependency, t: u32) -> Option<Issue> {
    if t == NONE {
        return Some(Issue::Missing {
            dep: ex.push_string(&dep.name),
        });
    }
    let target = ex.recs[t as usize];
    if target.own == Own::Disabled {
        return Some(Issue::Disabled { node: t });
    }
    if let Some(req) = &dep.req {
        let found = &g.nodes[t as usize].version;
        if !req.matches(found) {
            return Some(Issue::OutOfRange {
                node: t,
                range: ex.push_range(req, found),
            });
        }
    }
    target.blocked.then_some(Issue::Blocked { node: t })
}

fn ctrl_issue(
    ex: &mut Explain,
    running: Option<&BTreeMap<String, Version>>,
    dep: &Dependency,
) -> Option<Issue> {
    let Some(running) = running else {
        return Some(Issue::CtrlUnknown {
            dep: ex.push_string(&dep.name),
        });
    };
    let Some(found) = running.get(&dep.name) else {
        return Some(Issue::CtrlMissing {
            dep: ex.push_string(&dep.name),
        });
    };
    match &dep.req {
        Some(req) if !req.matches(found) => Some(Issue::CtrlOutOfRange {
            dep: ex.push_string(&dep.name),
            range: ex.push_range(req, found),
        }),
        _ => None,
    }
}

/// Installed manifests with `incoming` ones replacing those of the same
/// side and name (an upgrade or downgrade), sorted by side and name.
pub fn merge_installed(installed: Vec<Manifest>, incoming: Vec<Manifest>) -> Vec<Manifest> {
    let mut by_key: BTreeMap<(Side, String), Manifest> = BTreeMap::new();
    for m in installed.into_iter().chain(incoming) {
        by_key.insert((m.side, m.name.clone()), m);
    }
    by_key.into_values().collect()
}

/// Every plugin in `plugins` that depends on `name` through `depend`,
/// directly or through others, sorted by name (without `name` itself).
/// Only same-side `depend` edges count; for `ctrlDepend` effects, resolve
/// the client side again with the new controller running set.
pub fn dependents_of(plugins: &[Node], name: &str) -> Vec<String> {
    let g = Graph::build(plugins);
    let n = g.len();
    let mut seen = vec![false; n];
    // Start from the plugins naming it, which also works when `name` is
    // not in the set (who would a new plugin of that name affect?).
    let mut todo: Vec<usize> = (0..n)
        .filter(|&i| g.nodes[i].name != name && g.nodes[i].depend.iter().any(|d| d.name == name))
        .collect();
    for &i in &todo {
        seen[i] = true;
    }
    while let Some(v) = todo.pop() {
        for &s in g.dependents(v) {
            if !seen[s as usize] {
                seen[s as usize] = true;
                todo.push(s as usize);
            }
        }
    }
    (0..n)
        .filter(|&i| seen[i] && g.nodes[i].name != name)
        .map(|i| g.nodes[i].name.clone())
        .collect()
}

/// Installed plugins that load `before` an import and would be blocked
/// `after` it, as errors that refuse the import. Plugins the package itself
/// brings (`incoming_names`) are not counted: their problems are the
/// package's own, reported from `after` directly.
pub fn broken_by_import(
    side: Side,
    before: &Resolution,
    after: &Resolution,
    incoming_names: &[&str],
) -> Problems {
    let mut problems = Problems::default();
    for name in &before.load_order {
        if incoming_names.contains(&name) {
            continue;
        }
        if let Some(b) = after.blocked.get(name) {
            problems.push(
                Problem::new(
                    ProblemCode::ImportBreaksInstalled,
                    side.subject(name),
                    format!(
                        "this import would break installed {} {name}: {}",
                        side.plugin_label(),
                        b.message()
                    ),
                    format!(
                        "import a package that keeps {name}'s dependencies satisfied, or first upgrade or remove {name} ({})",
                        b.hint()
                    ),
                ),
            );
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn node(name: &str, deps: &[&str]) -> Node {
        Node {
            name: name.into(),
            version: v("1.0"),
            side: Side::Controller,
            load: true,
            depend: deps.iter().map(|d| Dependency::any(*d)).collect(),
            ctrl_depend: Vec::new(),
            failure: None,
        }
    }

    fn run(plugins: Vec<Node>) -> Resolution {
        resolve(&ResolveInput {
            plugins,
            running_controller: None,
        })
    }

    fn blocked<'a>(r: &'a Resolution, name: &str) -> &'a Blocked {
        r.blocked
            .get(name)
            .unwrap_or_else(|| panic!("{name} not blocked: {r:#?}"))
    }

    #[test]
    fn dependencies_first_ties_by_name_and_reverse_stop() {
        let r = run(vec![
            node("c", &["b"]),
            node("z", &[]),
            node("b", &["a"]),
            node("a", &[]),
            node("m", &["a", "z"]),
        ]);
        assert_eq!(r.load_order, ["a", "b", "c", "z", "m"]);
        assert_eq!(r.stop_order, ["m", "z", "c", "b", "a"]);
        assert!(r.blocked.is_empty());
        assert!(r.loads("m"));
    }

    #[test]
    fn failure_blocks_only_the_plugin_and_its_dependents_with_the_chain() {
        let r = run(vec![
            node("a", &[]).with_failure("license expired"),
            node("b", &["a"]),
            node("c", &["b"]),
            node("d", &[]),
        ]);
        assert_eq!(r.load_order, ["d"]);
        assert_eq!(
            blocked(&r, "a").reason(),
            BlockReason::Failed("license expired".into())
        );
        assert_eq!(blocked(&r, "a").message(), "a cannot load: license expired");
        assert_eq!(
            blocked(&r, "b").message(),
            "b cannot load: depends on a, which failed: license expired"
        );
        assert_eq!(
            blocked(&r, "c").message(),
            "c cannot load: depends on b, which depends on a, which failed: license expired"
        );
        assert_eq!(
            blocked(&r, "c").reason(),
            BlockReason::DependencyFailed {
                dep: "b".into(),
                chain: vec!["b".into(), "a".into()],
                elided: 0,
                cause: "failed: license expired".into(),
            }
        );
        assert!(blocked(&r, "c").hint().contains("fix a first"));
    }

    #[test]
    fn disabled_controller_plugin_and_its_dependents() {
        let mut a = node("a", &[]);
        a.load = false;
        let r = run(vec![a, node("b", &["a"]), node("c", &["b"])]);
        assert!(r.load_order.is_empty());
        assert_eq!(blocked(&r, "a").reason(), BlockReason::Disabled);
        assert_eq!(
            blocked(&r, "a").message(),
            "a is not loaded: it is disabled (enable: false)"
        );
        assert_eq!(
            blocked(&r, "b").reason(),
            BlockReason::DependencyDisabled { dep: "a".into() }
        );
        assert_eq!(
            blocked(&r, "c").message(),
            "c cannot load: depends on b, which depends on a, which is disabled (enable: false)"
        );
    }

    #[test]
    fn client_enable_false_still_loads() {
        let m = Manifest {
            side: Side::Client,
            name: "a".into(),
            version: v("1"),
            enable: false,
            depend: Vec::new(),
            ctrl_depend: Vec::new(),
            min_host_version: None,
            custom_hmi_versions: Vec::new(),
            must_controller_versions: Vec::new(),
            author: None,
            description: None,
            config: Default::default(),
            cycle_budget_us: None,
            bridge: Default::default(),
        };
        assert!(Node::from_manifest(&m).load);
        let controller = Manifest {
            side: Side::Controller,
            ..m
        };
        assert!(!Node::from_manifest(&controller).load);
    }

    #[test]
    fn missing_dependency_and_its_chain() {
        let r = run(vec![node("b", &["x"]), node("c", &["b"])]);
        assert_eq!(
            blocked(&r, "b").reason(),
            BlockReason::MissingDependency { dep: "x".into() }
        );
        assert_eq!(
            blocked(&r, "b").message(),
            "b cannot load: depends on x, which is not installed"
        );
        assert_eq!(
            blocked(&r, "c").message(),
            "c cannot load: depends on b, which depends on x, which is not installed"
        );
    }

    #[test]
    fn dependency_out_of_range() {
        let mut a = node("a", &[]);
        a.version = v("1.5");
        let mut b = node("b", &[]);
        b.depend = vec![Dependency::with_req(
            "a",
            VersionReq::parse(">=2").unwrap_or_else(|_| VersionReq::any()),
        )];
        let mut ok = node("ok", &[]);
        ok.depend = vec![Dependency::with_req(
            "a",
            VersionReq::parse("[1.5,2)").unwrap_or_else(|_| VersionReq::any()),
        )];
        let r = run(vec![a, b, ok]);
        assert_eq!(r.load_order, ["a", "ok"]);
        let b = blocked(&r, "b");
        assert!(
            matches!(&b.reason(), BlockReason::DependencyOutOfRange { dep, found, .. } if dep == "a" && found == &v("1.5"))
        );
        assert_eq!(
            b.message(),
            "b cannot load: depends on a, which is version 1.5, but b requires >=2"
        );
    }

    fn assert_real_cycle(plugins: &[Node], members: &[String], start: &str) {
        assert_eq!(members.first().map(String::as_str), Some(start));
        let mut seen = std::collections::BTreeSet::new();
        for (k, m) in members.iter().enumerate() {
            assert!(seen.insert(m), "{m} repeats in {members:?}");
            let next = &members[(k + 1) % members.len()];
            let node = plugins
                .iter()
                .find(|p| &p.name == m)
                .unwrap_or_else(|| panic!("{m}"));
            assert!(
                node.depend.iter().any(|d| &d.name == next),
                "{m} -> {next} is not an edge"
            );
        }
    }

    #[test]
    fn every_cycle_member_is_named_with_its_cycle_and_dependents_chain_to_it() {
        let plugins = vec![
            node("a", &["b"]),
            node("b", &["c"]),
            node("c", &["a"]),
            node("d", &["a"]),
            node("e", &[]),
        ];
        let r = run(plugins.clone());
        assert_eq!(r.load_order, ["e"]);
        assert_eq!(
            blocked(&r, "a").message(),
            "a cannot load: it is in a dependency cycle: a -> b -> c -> a"
        );
        assert_eq!(
            blocked(&r, "b").message(),
            "b cannot load: it is in a dependency cycle: b -> c -> a -> b"
        );
        assert_eq!(
            blocked(&r, "c").reason(),
            BlockReason::Cycle {
                members: vec!["c".into(), "a".into(), "b".into()],
                length: 3
            }
        );
        assert_eq!(
            blocked(&r, "d").message(),
            "d cannot load: depends on a, which is in a dependency cycle: a -> b -> c -> a"
        );
        assert!(matches!(
            blocked(&r, "d").reason(),
            BlockReason::DependencyFailed { .. }
        ));
        for name in ["a", "b", "c"] {
            let BlockReason::Cycle { members, .. } = &blocked(&r, name).reason() else {
                panic!("{name}")
            };
            assert_real_cycle(&plugins, members, name);
        }
    }

    #[test]
    fn self_loop_and_figure_eight() {
        let r = run(vec![node("s", &["s"])]);
        assert_eq!(
            blocked(&r, "s").message(),
            "s cannot load: it is in a dependency cycle: s -> s"
        );
        let plugins = vec![
            node("a", &["b", "c"]),
            node("b", &["a"]),
            node("c", &["d"]),
            node("d", &["a", "d"]),
        ];
        let r = run(plugins.clone());
        for name in ["a", "b", "c", "d"] {
            let BlockReason::Cycle { members, length } = &blocked(&r, name).reason() else {
                panic!("{name}: {r:#?}")
            };
            assert_eq!(*length, members.len());
            assert_real_cycle(&plugins, members, name);
        }
        assert_eq!(
            blocked(&r, "d").message(),
            "d cannot load: it is in a dependency cycle: d -> d"
        );
    }

    #[test]
    fn failed_cycle_member_keeps_its_failure_and_mentions_the_cycle() {
        let r = run(vec![
            node("a", &["b"]).with_failure("license expired"),
            node("b", &["a"]),
        ]);
        let a = blocked(&r, "a");
        assert_eq!(a.reason(), BlockReason::Failed("license expired".into()));
        assert_eq!(
            a.message(),
            "a cannot load: license expired; it is in a dependency cycle: a -> b -> a"
        );
        assert!(matches!(
            blocked(&r, "b").reason(),
            BlockReason::Cycle { .. }
        ));
    }

    #[test]
    fn huge_cycle_is_capped_and_huge_chain_does_not_overflow() {
        let n = 2000;
        let names: Vec<String> = (0..n).map(|i| format!("p{i:05}")).collect();
        let plugins: Vec<Node> = (0..n)
            .map(|i| node(&names[i], &[names[(i + 1) % n].as_str()]))
            .collect();
        let r = run(plugins);
        let BlockReason::Cycle { members, length } = &blocked(&r, "p00007").reason() else {
            panic!()
        };
        assert_eq!(*length, n);
        assert_eq!(members.len(), MAX_CYCLE_SHOWN);
        assert_eq!(members[1], "p00008");
        assert!(blocked(&r, "p00007")
            .message()
            .ends_with("-> ... (1968 more) -> p00007"));

        // A 100 000-plugin chain whose end failed: iterative, no stack
        // overflow, and the chain in each message is capped.
        let n = 100_000;
        let names: Vec<String> = (0..n).map(|i| format!("q{i:06}")).collect();
        let mut plugins: Vec<Node> = (0..n)
            .map(|i| match names.get(i + 1) {
                Some(next) => node(&names[i], &[next.as_str()]),
                None => node(&names[i], &[]),
            })
            .collect();
        if let Some(last) = plugins.last_mut() {
            last.failure = Some("license expired".into());
        }
        let r = run(plugins);
        assert!(r.load_order.is_empty());
        let first = blocked(&r, "q000000");
        let BlockReason::DependencyFailed {
            chain,
            elided,
            cause,
            ..
        } = &first.reason()
        else {
            panic!()
        };
        assert_eq!(chain.len(), MAX_CHAIN);
        assert_eq!(chain.last().map(String::as_str), Some("q099999"));
        assert_eq!(chain[0], "q000001");
        assert_eq!(chain.len() + elided, n - 1);
        assert_eq!(cause, "failed: license expired");
        assert!(first.message().contains(&format!("[{elided} more plugin(s)], which depends on q099999, which failed: license expired")), "{}", first.message());
    }

    #[test]
    fn all_problems_of_a_plugin_are_in_its_message() {
        let r = run(vec![
            node("a", &[]).with_failure("bad signature"),
            node("b", &["x", "a"]),
        ]);
        let b = blocked(&r, "b");
        assert_eq!(
            b.reason(),
            BlockReason::MissingDependency { dep: "x".into() }
        );
        assert_eq!(
            b.message(),
            "b cannot load: depends on x, which is not installed; depends on a, which failed: bad signature"
        );
    }

    fn client(name: &str, ctrl: Vec<Dependency>) -> Node {
        Node {
            side: Side::Client,
            ctrl_depend: ctrl,
            ..node(name, &[])
        }
    }

    #[test]
    fn controller_dependencies_of_client_plugins() {
        let req = VersionReq::parse(">=2").unwrap_or_else(|_| VersionReq::any());
        let plugins = vec![
            client("any", vec![Dependency::any("motion")]),
            client("ranged", vec![Dependency::with_req("motion", req)]),
            client("missing", vec![Dependency::any("vision")]),
            client("none", vec![]),
            client("chained", vec![]),
        ];
        let mut plugins = plugins;
        plugins[4].depend = vec![Dependency::any("missing")];

        let unknown = resolve(&ResolveInput {
            plugins: plugins.clone(),
            running_controller: None,
        });
        assert_eq!(unknown.load_order, ["none"]);
        assert_eq!(
            blocked(&unknown, "any").reason(),
            BlockReason::ControllerStateUnknown {
                dep: "motion".into()
            }
        );
        assert!(blocked(&unknown, "any")
            .message()
            .contains("running plugins are unknown"));

        let running: BTreeMap<String, Version> = [("motion".to_string(), v("1.5"))].into();
        let r = resolve(&ResolveInput {
            plugins,
            running_controller: Some(running),
        });
        assert_eq!(r.load_order, ["any", "none"]);
        assert_eq!(
            blocked(&r, "missing").reason(),
            BlockReason::MissingControllerDependency {
                dep: "vision".into()
            }
        );
        assert_eq!(
            blocked(&r, "missing").message(),
            "missing cannot load: needs controller plugin vision (ctrlDepend), which is not running on the controller"
        );
        assert!(matches!(
            blocked(&r, "ranged").reason(),
            BlockReason::ControllerDependencyOutOfRange { .. }
        ));
        assert_eq!(
            blocked(&r, "ranged").message(),
            "ranged cannot load: needs controller plugin motion (ctrlDepend), which runs on the controller in version 1.5, but ranged requires >=2"
        );
        assert_eq!(
            blocked(&r, "chained").message(),
            "chained cannot load: depends on missing, which depends on vision, which is a controller plugin that is not running on the controller"
        );
    }

    #[test]
    fn ctrl_depend_is_ignored_on_the_controller_side() {
        let mut a = node("a", &[]);
        a.ctrl_depend = vec![Dependency::any("x")];
        assert_eq!(run(vec![a]).load_order, ["a"]);
    }

    #[test]
    fn duplicate_names_block_that_name() {
        let r = run(vec![
            node("a", &[]),
            node("a", &["zz"]),
            node("b", &["a"]),
            node("c", &[]),
        ]);
        assert_eq!(r.load_order, ["c"]);
        assert_eq!(
            blocked(&r, "a").reason(),
            BlockReason::DuplicateName { count: 2 }
        );
        assert!(matches!(
            blocked(&r, "b").reason(),
            BlockReason::DependencyFailed { .. }
        ));
    }

    #[test]
    fn serializes_with_kind_tags() {
        let r = run(vec![node("a", &[]).with_failure("x"), node("b", &["a"])]);
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["blocked"]["a"]["reason"]["kind"], "failed");
        assert_eq!(json["blocked"]["a"]["reason"]["detail"], "x");
        assert_eq!(json["blocked"]["b"]["reason"]["kind"], "dependency_failed");
        assert_eq!(json["blocked"]["b"]["reason"]["detail"]["chain"][0], "a");
    }

    fn manifest(side: Side, name: &str, version: &str, depend: Vec<Dependency>) -> Manifest {
        Manifest {
            side,
            name: name.into(),
            version: v(version),
            enable: true,
            depend,
            ctrl_depend: Vec::new(),
            min_host_version: None,
            custom_hmi_versions: Vec::new(),
            must_controller_versions: Vec::new(),
            author: None,
            description: None,
            config: Default::default(),
            cycle_budget_us: None,
            bridge: Default::default(),
        }
    }

    #[test]
    fn merge_replaces_by_side_and_name() {
        let installed = vec![
            manifest(Side::Client, "a", "1", vec![]),
            manifest(Side::Controller, "a", "1", vec![]),
            manifest(Side::Client, "b", "1", vec![]),
        ];
        let incoming = vec![
            manifest(Side::Client, "a", "2", vec![]),
            manifest(Side::Client, "c", "1", vec![]),
        ];
        let merged = merge_installed(installed, incoming);
        let got: Vec<(Side, &str, String)> = merged
            .iter()
            .map(|m| (m.side, m.name.as_str(), m.version.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (Side::Client, "a", "2".to_string()),
                (Side::Client, "b", "1".to_string()),
                (Side::Client, "c", "1".to_string()),
                (Side::Controller, "a", "1".to_string()),
            ]
        );
    }

    #[test]
    fn dependents_are_the_reverse_closure() {
        let plugins = vec![
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["b"]),
            node("d", &["c", "a"]),
            node("e", &[]),
            node("f", &["new"]),
        ];
        assert_eq!(dependents_of(&plugins, "a"), ["b", "c", "d"]);
        assert_eq!(dependents_of(&plugins, "c"), ["d"]);
        assert!(dependents_of(&plugins, "e").is_empty());
        assert_eq!(dependents_of(&plugins, "new"), ["f"]);
    }

    #[test]
    fn an_import_that_breaks_an_installed_plugin_is_reported() {
        let req = VersionReq::parse(">=2").unwrap_or_else(|_| VersionReq::any());
        let installed = vec![
            manifest(
                Side::Controller,
                "x",
                "1",
                vec![Dependency::with_req("y", req)],
            ),
            manifest(Side::Controller, "y", "2.0", vec![]),
            manifest(Side::Controller, "z", "1", vec![]),
        ];
        let incoming = vec![manifest(Side::Controller, "y", "1.5", vec![])];
        let nodes = |ms: &[Manifest]| ResolveInput {
            plugins: ms.iter().map(Node::from_manifest).collect(),
            running_controller: None,
        };
        let before = resolve(&nodes(&installed));
        let after = resolve(&nodes(&merge_installed(installed, incoming)));
        let problems = broken_by_import(Side::Controller, &before, &after, &["y"]);
        assert_eq!(problems.len(), 1, "{problems}");
        let p = &problems.0[0];
        assert_eq!(p.subject, "controller plugin \"x\"");
        assert_eq!(
            p.message,
            "this import would break installed controller plugin x: x cannot load: depends on y, which is version 1.5, but x requires >=2"
        );
        assert!(
            p.hint.contains("install a version of y matching >=2"),
            "{}",
            p.hint
        );
    }
}
