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
//! Cost: O(V + E) expected to build the graph (names hashed, and sorted by
//! a radix sort of the 8 bytes after the prefix all names share, comparing
//! names only where those bytes tie; one more O(V log V) sort when a name
//! is duplicated), O(log₆₄ V) per plugin to take the ready ones in name
//! order, and Tarjan's O(V + E) only over what that leaves (cycles and what
//! depends on them), plus a shortest-path tree each way per component with
//! a cycle. Names are copied once into the resolution; `load_order`,
//! `stop_order` and `blocked` refer to them by index, with no string per
//! plugin. Chains and cycles in messages are capped ([`MAX_CHAIN`],
//! [`MAX_CYCLE_SHOWN`]) so a pathological 10 000-plugin chain cannot make
//! the output quadratic. A [`Blocked`] holds only indices into a record
//! shared by the resolution; its reason, message and hint are rendered
//! when asked for, each in O(`MAX_CHAIN`) plus the plugin's own entries
//! plus, where it names a cycle, the length of the walk that finds the
//! cycle from those trees (done then, not when resolving), so thousands of
//! blocked plugins cost no text until they are reported.

mod explain;
mod order;

use crate::code::ProblemCode;
use crate::manifest::{Dependency, Manifest, Side};
use crate::problem::{Problem, Problems};
use crate::version::{Version, VersionReq};
use explain::{Explain, Issue, Names, Own, Rec};
use serde::Serialize;
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
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

/// Bits of [`Graph::flags`]: what [`check_node`] needs to know of a plugin
/// without reading its [`Node`], which the input scatters over the heap.
const LOADS: u8 = 1;
const FAILED: u8 = 2;
/// A client plugin with `ctrlDepend` entries.
const CTRL: u8 = 4;
/// More than one plugin has its name.
const DUPLICATE: u8 = 8;
/// A `depend` entry's range excludes the plugin present.
const OUT_OF_RANGE: u8 = 16;

/// Word-at-a-time multiplicative hash (FxHash style) with murmur3's 64-bit
/// finalizer, for interning plugin names. SipHash costs more than the rest
/// of the resolver together; the per-process random seed keeps colliding
/// names from being precomputed, and the number of names is bounded by
/// what a host installs.
fn name_hash(seed: u64, bytes: &[u8]) -> u64 {
    // The length goes first, so the words below (the last one overlapping
    // the one before it) determine the name.
    let mut h = mix(seed, bytes.len() as u64);
    let whole = bytes.len() / 8;
    for k in 0..whole {
        h = mix(h, word_at(bytes, 8 * k));
    }
    if !bytes.len().is_multiple_of(8) {
        let last = match bytes.len().checked_sub(8) {
            Some(from) => word_at(bytes, from),
            None => bytes.iter().fold(0, |w, &b| (w << 8) | u64::from(b)),
        };
        h = mix(h, last);
    }
    finish(h)
}

fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// murmur3's fmix64: every bit of `h` reaches the low bits a slot index uses.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The 8 bytes of `bytes` from `at` as a little-endian word (0 past the end).
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(w) = bytes.get(at..at + 8) {
        word.copy_from_slice(w);
    }
    u64::from_le_bytes(word)
}

/// `a == b`, 8 bytes at a time: names are short, and comparing them this
/// way costs less than the call to memcmp that `==` makes.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let Some(last) = a.len().checked_sub(8) else {
        return a.iter().zip(b).all(|(x, y)| x == y);
    };
    let mut at = 0;
    while at < last {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += 8;
    }
    word_at(a, last) == word_at(b, last)
}

/// One slot of [`NameIndex`]; `id == NONE` marks an empty slot.
#[derive(Clone, Copy)]
struct Slot {
    /// The name's word (see [`NameIndex::key`]).
    word: u64,
    id: u32,
    len: u32,
}

const EMPTY: Slot = Slot {
    word: 0,
    id: NONE,
    len: 0,
};

/// Open addressing (linear probing) from a name to its node, keyed by what
/// follows the prefix all names share: a slot (16 bytes) holds the next 8
/// bytes of its name, so a name no longer than the prefix and 8 bytes is
/// hashed from one word and compared within the one slot a lookup reads,
/// without touching the stored names. (`HashMap<&str, u32>` hashed all of
/// every name and compared it against the input's strings, scattered over
/// the heap.)
struct NameIndex {
    seed: u64,
    mask: usize,
    slots: Vec<Slot>,
    /// The prefix all names share.
    prefix: Vec<u8>,
}

/// What a lookup of a name compares, from [`NameIndex::key`].
#[derive(Clone, Copy)]
struct Key {
    word: u64,
    /// The low half of the hash: all a slot index uses (16 bytes a key,
    /// as many of them are kept for a moment).
    hash: u32,
    len: u32,
}

impl NameIndex {
    /// The index of the `count` distinct names `name_of` gives (their ids),
    /// which all start with `prefix`.
    fn new<'n>(prefix: &[u8], count: usize, name_of: impl Fn(u32) -> &'n str) -> NameIndex {
        // At most 2/3 full, so probe sequences stay short.
        let size = (count + count / 2 + 1).next_power_of_two();
        let mut index = NameIndex {
            seed: RandomState::new().hash_one(0x9e37_79b9_u32),
            mask: size - 1,
            slots: vec![EMPTY; size],
            prefix: prefix.to_vec(),
        };
        for id in 0..count as u32 {
            let Some(key) = index.key(name_of(id).as_bytes()) else {
                continue; // cannot happen: every name has the prefix
            };
            let mut slot = index.home(key.hash.into());
            while index.slots[slot].id != NONE {
                slot = (slot + 1) & index.mask;
            }
            index.slots[slot] = Slot {
                word: key.word,
                id,
                len: key.len,
            };
        }
        index
    }

    /// The slot a probe for `hash` starts at.
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// True if a name of length `len` is compared in full by its key.
    fn short(&self, len: usize) -> bool {
        len <= self.prefix.len() + 8
    }

    /// The key of `name`, or `None` if it lacks the prefix
    /// (so it is none of the names). The word is the up to 8 bytes after
    /// the prefix, little-endian, padded with zeros; the hash covers the
    /// word, the length and any bytes after the word.
    #[inline(always)]
    fn key(&self, name: &[u8]) -> Option<Key> {
        let from = self.prefix.len();
        if name.len() < from || !same_bytes(&name[..from], &self.prefix) {
            return None;
        }
        let rest = name.len() - from;
        let word = if rest >= 8 {
            word_at(name, from)
        } else if rest == 0 {
            0
        } else if name.len() >= 8 {
            // The name's last 8 bytes, shifted past those before `from`.
            word_at(name, name.len() - 8) >> (8 * (8 - rest))
        } else {
            name[from..]
                .iter()
                .rev()
                .fold(0, |w, &b| (w << 8) | u64::from(b))
        };
        let tail = match name.get(from + 8..) {
            Some(tail) if !tail.is_empty() => name_hash(self.seed, tail),
            _ => 0,
        };
        let hash = finish(mix(mix(self.seed ^ tail, name.len() as u64), word));
        Some(Key {
            word,
            hash: hash as u32,
            len: name.len() as u32,
        })
    }

    /// The id of the name of `key` (which is `full`), or
    /// `NONE`. A name not [`short`](Self::short) is compared with `name_of`
    /// the stored id; a short one is decided by its key alone.
    fn lookup<'n>(&self, key: Key, full: &[u8], name_of: impl Fn(u32) -> &'n str) -> u32 {
        let short = self.short(key.len as usize);
        let mut slot = self.home(key.hash.into());
        loop {
            let s = self.slots[slot];
            if s.id == NONE {
                return NONE;
            }
            if s.word == key.word
                && s.len == key.len
                && (short || same_bytes(name_of(s.id).as_bytes(), full))
            {
                return s.id;
            }
            slot = (slot + 1) & self.mask;
        }
    }
}

/// Entries keyed before they are looked up together (see [`Graph::build`]):
/// 1024 of 32 bytes, a buffer that stays in the first-level cache.
const LOOKUP_CHUNK: usize = 1024;

/// Sorts `entries` by key, equal keys by `name_of` their id: a radix sort
/// (least significant byte first, skipping the bytes all keys share), then
/// a comparison sort of each run of equal keys.
fn sort_by_key_then_name<'n>(entries: &mut Vec<(u64, u32)>, name_of: impl Fn(u32) -> &'n str) {
    let n = entries.len();
    let mut counts = [[0u32; 256]; 8];
    for &(key, _) in entries.iter() {
        for (b, count) in counts.iter_mut().enumerate() {
            count[(key >> (8 * b)) as u8 as usize] += 1;
        }
    }
    let mut buf = vec![(0u64, 0u32); n];
    for (b, count) in counts.iter_mut().enumerate() {
        if count.iter().any(|&c| c as usize == n) {
            continue;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        for &entry in entries.iter() {
            let digit = (entry.0 >> (8 * b)) as u8 as usize;
            buf[count[digit] as usize] = entry;
            count[digit] += 1;
        }
        std::mem::swap(entries, &mut buf);
    }
    let mut from = 0;
    while from < n {
        let key = entries[from].0;
        let to = from + entries[from..].iter().take_while(|e| e.0 == key).count();
        if to - from > 1 {
            // Stable: copies of a name stay in input order.
            entries[from..to].sort_by(|a, b| name_of(a.1).cmp(name_of(b.1)));
        }
        from = to;
    }
}

fn span_str(text: &str, (start, len): (u32, u32)) -> &str {
    &text[start as usize..(start + len) as usize]
}

struct Graph<'a> {
    plugins: &'a [Node],
    /// Input position of node i (of its first copy, for a duplicated name).
    pos: Vec<u32>,
    /// Number of input plugins with this name (>1 = duplicate).
    copies: Vec<u32>,
    /// [`LOADS`], [`FAILED`], [`CTRL`], [`DUPLICATE`], [`OUT_OF_RANGE`] of node i.
    flags: Vec<u8>,
    /// CSR: `depend` targets of node i are `targets[start[i]..start[i+1]]`,
    /// one per `depend` entry in order, `NONE` for a missing plugin.
    start: Vec<u32>,
    targets: Vec<u32>,
    /// Per entry of `targets`: its version range excludes the plugin present.
    out_of_range: Vec<bool>,
    /// Reverse CSR over present targets: who depends on node i.
    rstart: Vec<u32>,
    rsources: Vec<u32>,
}

impl<'a> Graph<'a> {
    /// The graph of `plugins`, nodes numbered in name order, and their names.
    ///
    /// The input is read in two passes in input order (names, then
    /// `depend` entries): that is the order its strings were allocated in,
    /// so the reads stream through memory, where walking it in name order
    /// missed the cache on every node and every entry.
    fn build(plugins: &'a [Node]) -> (Graph<'a>, Names) {
        let count = plugins.len();
        let mut text = String::new();
        let mut span_by_pos: Vec<(u32, u32)> = Vec::with_capacity(count);
        let mut flags_by_pos = Vec::with_capacity(count);
        // Each plugin's entries, so the second pass reads no `Node` again.
        let mut depend_by_pos: Vec<&[Dependency]> = Vec::with_capacity(count);
        for node in plugins {
            let name = node.name.as_str();
            span_by_pos.push((text.len() as u32, name.len() as u32));
            text.push_str(name);
            let mut flags = 0;
            if node.load {
                flags |= LOADS;
            }
            if node.failure.is_some() {
                flags |= FAILED;
            }
            if node.side == Side::Client && !node.ctrl_depend.is_empty() {
                flags |= CTRL;
            }
            flags_by_pos.push(flags);
            depend_by_pos.push(&node.depend);
        }

        // Names often share a long prefix ("vendor.plugin-"): the 8 bytes
        // after the prefix common to all, as one big-endian integer, order
        // like the names themselves wherever they differ, so the names are
        // sorted by a radix sort of those integers, comparing names only
        // where the integers tie. Copies of a name end up side by side, in
        // input order.
        let name_at = |p: u32| span_str(&text, span_by_pos[p as usize]);
        let first = plugins.first().map_or("", |p| p.name.as_str()).as_bytes();
        let common = (0..count as u32).fold(first.len(), |len, p| {
            let name = name_at(p).as_bytes();
            if name.starts_with(&first[..len]) {
                return len;
            }
            first[..len]
                .iter()
                .zip(name)
                .take_while(|(a, b)| a == b)
                .count()
        });
        let sort_key = |name: &str| {
            let rest = name.as_bytes().get(common..).unwrap_or_default();
            match rest.get(..8) {
                Some(_) => word_at(rest, 0).swap_bytes(),
                None => rest
                    .iter()
                    .enumerate()
                    .fold(0, |k, (at, &b)| k | (u64::from(b) << (56 - 8 * at))),
            }
        };
        let mut sorted: Vec<(u64, u32)> = (0..count as u32)
            .map(|p| (sort_key(name_at(p)), p))
            .collect();
        sort_by_key_then_name(&mut sorted, name_at);
        // One node per name, at its first copy; the later ones are left out
        // (`rank_by_pos` NONE) and counted.
        let mut pos: Vec<u32> = Vec::with_capacity(count);
        let mut copies: Vec<u32> = Vec::with_capacity(count);
        let mut rank_by_pos = vec![NONE; count];
        for (k, &(key, p)) in sorted.iter().enumerate() {
            let same = k > 0 && {
                let (prev_key, prev) = sorted[k - 1];
                prev_key == key && name_at(prev) == name_at(p)
            };
            match copies.last_mut() {
                Some(c) if same => *c += 1,
                _ => {
                    rank_by_pos[p as usize] = pos.len() as u32;
                    pos.push(p);
                    copies.push(1);
                }
            }
        }
        let n = pos.len();

        let mut flags: Vec<u8> = pos
            .iter()
            .zip(&copies)
            .map(|(&p, &c)| match c {
                1 => flags_by_pos[p as usize],
                _ => flags_by_pos[p as usize] | DUPLICATE,
            })
            .collect();
        let names = Names {
            spans: pos.iter().map(|&p| span_by_pos[p as usize]).collect(),
            text,
        };
        if copies.iter().any(|&c| c > 1) {
            // The copy that stands for a duplicated name (its version is
            // what dependents' ranges are checked against, its entries are
            // what `dependents_of` follows) is the one the resolver has
            // always kept: the first of its name after this unstable sort
            // of all copies. The same sort of the same tuples makes the same
            // choice, so the reasons stay as they were.
            let mut all: Vec<(u64, &str, &Node)> = plugins
                .iter()
                .map(|p| (sort_key(&p.name), p.name.as_str(), p))
                .collect();
            all.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            let base = plugins.as_ptr() as usize;
            let size = std::mem::size_of::<Node>().max(1);
            let mut k = 0;
            let mut last = None;
            for (_, name, node) in all {
                if last == Some(name) {
                    continue;
                }
                last = Some(name);
                // Its input position, from its address in `plugins`.
                let at = (node as *const Node as usize).wrapping_sub(base) / size;
                if let (Some(slot), true) = (pos.get_mut(k), at < count) {
                    *slot = at as u32;
                }
                k += 1;
            }
        }
        let prefix = match names.len() {
            0 => &[][..],
            _ => names.get(0).as_bytes().get(..common).unwrap_or_default(),
        };
        let index = NameIndex::new(prefix, n, |i| names.get(i));

        let mut start = Vec::with_capacity(n + 1);
        start.push(0u32);
        let mut edges = 0u32;
        for (i, &p) in pos.iter().enumerate() {
            // A duplicate name's edges would depend on which copy is kept;
            // it is blocked anyway, so it gets none.
            if copies[i] == 1 {
                edges += depend_by_pos[p as usize].len() as u32;
            }
            start.push(edges);
        }
        let mut targets = vec![NONE; edges as usize];
        let mut out_of_range = vec![false; edges as usize];
        // The entries are keyed streaming through the input, a chunk at a
        // time, then the chunk is looked up: mixing the two, every entry's
        // load from the input waited behind the table's misses. (A chunk,
        // not all 50 000 at once: a list that large is a fresh mapping on
        // every resolve, and page faults cost more than the lookups.)
        let mut chunk: Vec<(Key, u32, &Dependency)> = Vec::with_capacity(LOOKUP_CHUNK);
        let mut any_out_of_range = false;
        let mut look_up = |chunk: &mut Vec<(Key, u32, &Dependency)>| {
            for &(key, e, dep) in chunk.iter() {
                let t = index.lookup(key, dep.name.as_bytes(), |i| names.get(i));
                targets[e as usize] = t;
                if let (Some(req), true) = (&dep.req, t != NONE) {
                    let found = &plugins[pos[t as usize] as usize].version;
                    let out = !req.matches(found);
                    out_of_range[e as usize] = out;
                    any_out_of_range |= out;
                }
            }
            chunk.clear();
        };
        for (p, depend) in depend_by_pos.iter().enumerate() {
            let i = rank_by_pos[p] as usize;
            if i == NONE as usize || copies[i] != 1 {
                continue;
            }
            let base = start[i];
            for (k, dep) in depend.iter().enumerate() {
                // A name without the prefix is none of the plugins': its
                // target stays NONE (missing).
                if let Some(key) = index.key(dep.name.as_bytes()) {
                    chunk.push((key, base + k as u32, dep));
                    if chunk.len() == LOOKUP_CHUNK {
                        look_up(&mut chunk);
                    }
                }
            }
        }
        look_up(&mut chunk);
        if any_out_of_range {
            for (i, f) in flags.iter_mut().enumerate() {
                if out_of_range[start[i] as usize..start[i + 1] as usize].contains(&true) {
                    *f |= OUT_OF_RANGE;
                }
            }
        }
        // Counting sort of the edges by target gives the reverse CSR with
        // sources in index order.
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
        let graph = Graph {
            plugins,
            pos,
            copies,
            flags,
            start,
            targets,
            out_of_range,
            rstart,
            rsources,
        };
        (graph, names)
    }

    fn len(&self) -> usize {
        self.pos.len()
    }

    /// The input plugin of node i.
    fn node(&self, i: usize) -> &'a Node {
        &self.plugins[self.pos[i] as usize]
    }

    fn deps(&self, i: usize) -> &[u32] {
        &self.targets[self.start[i] as usize..self.start[i + 1] as usize]
    }

    fn dependents(&self, i: usize) -> &[u32] {
        &self.rsources[self.rstart[i] as usize..self.rstart[i + 1] as usize]
    }

    /// Strongly connected components (iterative Tarjan) of the nodes
    /// `live` says are, in the order they complete: every component after
    /// all components it depends on. Returns the component id per node
    /// (`NONE` for the others) and the members of every component,
    /// flattened: component c is `members[bounds[c]..bounds[c+1]]`, its
    /// smallest first (its root for [`cycle_trees`]), the rest unordered.
    fn sccs(&self, live: impl Fn(usize) -> bool) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        /// The `index` of a node in a finished component or not live:
        /// above every DFS number, so `low.min(DONE)` changes nothing and
        /// an edge to such a node needs no test (and no on-stack flag).
        const DONE: u32 = NONE - 1;
        let n = self.len();
        let mut index: Vec<u32> = (0..n).map(|i| if live(i) { NONE } else { DONE }).collect();
        let mut low = vec![0u32; n];
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
                    let x = index[t];
                    if x == NONE {
                        index[t] = counter;
                        low[t] = counter;
                        counter += 1;
                        stack.push(t as u32);
                        call.push((t as u32, self.start[t]));
                    } else {
                        low[v] = low[v].min(x);
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
                        index[w as usize] = DONE;
                        comp[w as usize] = id;
                        members.push(w);
                        if w as usize == v {
                            break;
                        }
                    }
                    let component = &mut members[first..];
                    if let Some(smallest) = (0..component.len()).min_by_key(|&k| component[k]) {
                        component.swap(0, smallest);
                    }
                    bounds.push(members.len() as u32);
                }
            }
        }
        (comp, members, bounds)
    }
}

/// Records in `ex` what the cycles of component `id` (its `members`,
/// smallest first) are found from when rendered: the root (smallest member), its first
/// dependency in the component, and the shortest-path trees to and from
/// the root. Returns the component's index in `ex.cycles`.
fn cycle_trees(
    g: &Graph<'_>,
    comp: &[u32],
    id: u32,
    members: &[u32],
    ex: &mut Explain,
    queue: &mut std::collections::VecDeque<u32>,
) -> u32 {
    let index = ex.cycles.len() as u32;
    let Some(&root) = members.first() else {
        return index;
    };
    // Outside the component a node's parents are OUTSIDE (or already set,
    // for components done before); its members' start as NONE. So one
    // load per edge tells a member not yet reached: a node of a later
    // component (reached backwards) is still OUTSIDE.
    const OUTSIDE: u32 = NONE - 1;
    if ex.parent_fwd.is_empty() {
        ex.parent_fwd = vec![OUTSIDE; g.len()];
        ex.parent_bwd = vec![OUTSIDE; g.len()];
    }
    for &m in members {
        ex.parent_fwd[m as usize] = NONE;
        ex.parent_bwd[m as usize] = NONE;
    }
    // Forward BFS: parent_fwd[x] = predecessor of x on a shortest root -> x path.
    queue.push_back(root);
    ex.parent_fwd[root as usize] = root;
    while let Some(u) = queue.pop_front() {
        for &t in g.deps(u as usize) {
            if t != NONE && ex.parent_fwd[t as usize] == NONE {
                ex.parent_fwd[t as usize] = u;
                queue.push_back(t);
            }
        }
    }
    // Backward BFS: parent_bwd[x] = next hop on a shortest x -> root path.
    queue.push_back(root);
    ex.parent_bwd[root as usize] = root;
    while let Some(u) = queue.pop_front() {
        for &s in g.dependents(u as usize) {
            if ex.parent_bwd[s as usize] == NONE {
                ex.parent_bwd[s as usize] = u;
                queue.push_back(s);
            }
        }
    }
    let in_comp = |t: u32| t != NONE && comp[t as usize] == id;
    let next = g.deps(root as usize).iter().copied().find(|&t| in_comp(t));
    ex.cycles.push((root, next.unwrap_or(root)));
    index
}

/// The plugins whose dependencies are all decided, smallest index (= name)
/// first: a bitset with a summary level per factor of 64 (a level's bit k
/// is set while word k below it is not zero), so insert and pop cost a few
/// word operations per level, 3 levels for 262 144 plugins, and no
/// comparisons, where a binary heap sifts through log2 of the ready count.
struct ReadySet {
    /// Leaves first; the last level is one word.
    levels: Vec<Vec<u64>>,
}

impl ReadySet {
    fn new(n: usize) -> ReadySet {
        let mut levels = Vec::new();
        let mut len = n;
        loop {
            let words = len.div_ceil(64).max(1);
            levels.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            len = words;
        }
        ReadySet { levels }
    }

    fn insert(&mut self, i: usize) {
        let mut i = i;
        for level in &mut self.levels {
            let word = &mut level[i / 64];
            let was = *word;
            *word |= 1 << (i % 64);
            if was != 0 {
                // The levels above already know this word is not empty.
                break;
            }
            i /= 64;
        }
    }

    fn pop_min(&mut self) -> Option<usize> {
        let mut i = 0;
        for level in self.levels.iter().rev() {
            let word = level[i];
            if word == 0 {
                return None;
            }
            i = i * 64 + word.trailing_zeros() as usize;
        }
        let mut j = i;
        for level in &mut self.levels {
            let word = &mut level[j / 64];
            *word &= !(1 << (j % 64));
            if *word != 0 {
                break;
            }
            j /= 64;
        }
        Some(i)
    }
}

/// Resolves one side's plugin set. See the [module documentation](self).
pub fn resolve(input: &ResolveInput) -> Resolution {
    let (g, names) = Graph::build(&input.plugins);
    let n = g.len();
    let mut ex = Explain::new(names);

    // Kahn over every plugin, smallest name (= index) first. A plugin is
    // decided when it is taken, all its dependencies being decided; the
    // ones that load come out in load order, as Kahn over the loadable
    // ones alone would give: those never depend on blocked ones, so the
    // blocked ones taken in between change no loadable one's readiness.
    let mut pending: Vec<u32> = (0..n)
        .map(|i| g.deps(i).iter().filter(|&&t| t != NONE).count() as u32)
        .collect();
    let mut ready = ReadySet::new(n);
    for (i, &p) in pending.iter().enumerate() {
        if p == 0 {
            ready.insert(i);
        }
    }
    let mut state = vec![0u8; n];
    let mut load_order: Vec<u32> = Vec::with_capacity(n);
    let mut taken = 0;
    while let Some(v) = ready.pop_min() {
        taken += 1;
        // Most plugins load with nothing to record: no problem of their
        // own, every dependency present, loading and in range.
        let plain = g.flags[v] == LOADS
            && g.deps(v)
                .iter()
                .all(|&t| t != NONE && state[t as usize] == 0);
        if !plain {
            check_node(&g, input, &mut ex, &mut state, None, v, NONE);
        }
        if state[v] & BLOCKED == 0 {
            load_order.push(v as u32);
        }
        for &s in g.dependents(v) {
            let s = s as usize;
            pending[s] -= 1;
            if pending[s] == 0 {
                ready.insert(s);
            }
        }
    }

    // What is left is in a cycle or depends on one, all blocked: decide it
    // component by component, dependencies first. An acyclic set skips this.
    if taken < n {
        let (comp, members, bounds) = g.sccs(|i| pending[i] != 0);
        let mut queue = std::collections::VecDeque::new();
        for (id, range) in bounds.windows(2).enumerate() {
            let id = id as u32;
            let comp_members = &members[range[0] as usize..range[1] as usize];
            let cyclic = comp_members.len() > 1
                || comp_members
                    .first()
                    .is_some_and(|&m| g.deps(m as usize).contains(&m));
            let cycle = if cyclic {
                cycle_trees(&g, &comp, id, comp_members, &mut ex, &mut queue)
            } else {
                NONE
            };
            for &m in comp_members {
                check_node(
                    &g,
                    input,
                    &mut ex,
                    &mut state,
                    Some((&comp, id)),
                    m as usize,
                    cycle,
                );
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

/// Bits of the per-plugin state `check_node` keeps beside [`Rec`]: one byte
/// a plugin, so checking a dependency reads 10 KiB for 10 000 plugins
/// where the 36-byte records would spread it over 360 KiB.
const BLOCKED: u8 = 1;
const DISABLED: u8 = 2;

/// Decides whether plugin `i` (on `cycle` or `NONE`) is blocked and records
/// why in `ex` and `state`. All plugins it depends on outside its own
/// component are already decided there; `scc` is the component ids and
/// its own, `None` for a plugin in no cycle (its component is itself).
fn check_node(
    g: &Graph<'_>,
    input: &ResolveInput,
    ex: &mut Explain,
    state: &mut [u8],
    scc: Option<(&[u32], u32)>,
    i: usize,
    cycle: u32,
) {
    let flags = g.flags[i];
    // A duplicate name or being disabled decide alone; a pre-failure and
    // cycle membership are reported with the dependency problems after them.
    let own = if flags & DUPLICATE != 0 {
        Own::Duplicate(g.copies[i])
    } else if flags & LOADS == 0 {
        Own::Disabled
    } else if let (true, Some(f)) = (flags & FAILED != 0, &g.node(i).failure) {
        Own::Failed(ex.push_string(f))
    } else {
        Own::None
    };
    let mut rec = Rec {
        blocked: own != Own::None || cycle != NONE,
        own,
        cycle,
        self_loop: cycle != NONE && g.deps(i).contains(&(i as u32)),
        first: ex.issues.len() as u32,
        end: ex.issues.len() as u32,
        via: NONE,
        len: 0,
        last: i as u32,
    };
    if !matches!(own, Own::Duplicate(_) | Own::Disabled) {
        let base = g.start[i] as usize;
        for (k, &t) in g.deps(i).iter().enumerate() {
            // The common case, a present dependency that loads and is in
            // range, without reading its record.
            if t != NONE && state[t as usize] == 0 && flags & OUT_OF_RANGE == 0 {
                continue;
            }
            if let Some((comp, id)) = scc {
                if t != NONE && comp[t as usize] == id {
                    continue; // inside the cycle, already reported
                }
            }
            if let Some(issue) = depend_issue(g, ex, state, i, k, base + k, t) {
                ex.issues.push(issue);
            }
        }
        if flags & CTRL != 0 {
            for dep in &g.node(i).ctrl_depend {
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
    state[i] =
        if rec.blocked { BLOCKED } else { 0 } | if own == Own::Disabled { DISABLED } else { 0 };
    // A plugin that loads keeps `Rec::LOADS`: nothing reads the rest.
    if rec.blocked {
        ex.recs[i] = rec;
    }
}

/// The issue of `depend` entry `k` of plugin `i` (entry `e` of the graph,
/// naming node `t`), if any. The input entry is read only for an issue
/// that needs its text or range.
fn depend_issue(
    g: &Graph<'_>,
    ex: &mut Explain,
    state: &[u8],
    i: usize,
    k: usize,
    e: usize,
    t: u32,
) -> Option<Issue> {
    let dep = || g.node(i).depend.get(k);
    if t == NONE {
        return dep().map(|dep| Issue::Missing {
            dep: ex.push_string(&dep.name),
        });
    }
    let target = state[t as usize];
    if target & DISABLED != 0 {
        return Some(Issue::Disabled { node: t });
    }
    if g.flags[i] & OUT_OF_RANGE != 0 && g.out_of_range[e] {
        if let Some(req) = dep().and_then(|dep| dep.req.as_ref()) {
            return Some(Issue::OutOfRange {
                node: t,
                range: ex.push_range(req, &g.node(t as usize).version),
            });
        }
    }
    (target & BLOCKED != 0).then_some(Issue::Blocked { node: t })
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
    let (g, names) = Graph::build(plugins);
    let n = g.len();
    let mut seen = vec![false; n];
    // Start from the plugins naming it, which also works when `name` is
    // not in the set (who would a new plugin of that name affect?).
    let mut todo: Vec<usize> = (0..n)
        .filter(|&i| names.get(i as u32) != name && g.node(i).depend.iter().any(|d| d.name == name))
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
        .filter(|&i| seen[i] && names.get(i as u32) != name)
        .map(|i| names.get(i as u32).to_owned())
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
