//! Why a plugin cannot load: recorded compactly by the resolver, rendered
//! as text only when asked for.
//!
//! A heavily blocked set (thousands of plugins behind one failure or one
//! big cycle) used to cost more in reason texts than in resolving. The
//! resolver now records, per plugin, only indices: its own problem, its
//! unsatisfiable dependency entries, and for the chain to the root cause a
//! parent pointer (the dependency the chain continues through) plus the
//! chain's length and last plugin. A chain is rendered in O([`MAX_CHAIN`])
//! steps however long it is. A cycle member records only its component;
//! its cycle is walked from the component's shortest-path trees when it is
//! rendered. Nothing is rendered for a plugin whose [`Blocked`] is never
//! asked for its reason, message or hint.

use super::{BlockReason, MAX_CHAIN, MAX_CYCLE_SHOWN, NONE};
use crate::code::ProblemCode;
use crate::manifest::Side;
use crate::problem::Problem;
use crate::version::{Version, VersionReq};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

/// A plugin's own reason not to load, decided before its dependencies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Own {
    None,
    /// This many plugins share its name.
    Duplicate(u32),
    Disabled,
    /// A pre-failure: index into [`Explain::strings`].
    Failed(u32),
}

/// One unsatisfiable dependency entry. Plugins are node indices; names of
/// plugins outside the set are indices into [`Explain::strings`], a range
/// and the version found an index into [`Explain::ranges`].
#[derive(Clone, Copy)]
pub(super) enum Issue {
    Missing { dep: u32 },
    Disabled { node: u32 },
    OutOfRange { node: u32, range: u32 },
    Blocked { node: u32 },
    CtrlUnknown { dep: u32 },
    CtrlMissing { dep: u32 },
    CtrlOutOfRange { dep: u32, range: u32 },
}

/// What the resolver decided about one plugin.
#[derive(Clone, Copy)]
pub(super) struct Rec {
    pub(super) blocked: bool,
    pub(super) own: Own,
    /// Index into [`Explain::cycles`] of its component, or `NONE`.
    pub(super) cycle: u32,
    /// It depends on itself (its cycle is itself).
    pub(super) self_loop: bool,
    /// Its issues are `Explain::issues[first..end]`, in manifest order;
    /// the first is the primary reason when there is no own one.
    pub(super) first: u32,
    pub(super) end: u32,
    /// The chain a dependent continues with: the dependency it goes
    /// through (`NONE` where it ends), its length in names and the plugin
    /// it ends at (whose own problem or terminal issue is the cause).
    pub(super) via: u32,
    pub(super) len: u32,
    pub(super) last: u32,
}

impl Rec {
    pub(super) const LOADS: Rec = Rec {
        blocked: false,
        own: Own::None,
        cycle: NONE,
        self_loop: false,
        first: 0,
        end: 0,
        via: NONE,
        len: 0,
        last: NONE,
    };
}

/// The plugin names of one resolution, copied once from the input: node
/// i's name is `text[spans[i].0..][..spans[i].1]`, nodes in name order.
#[derive(Default)]
pub(super) struct Names {
    /// The names concatenated in input order (the order they are read in).
    pub(super) text: String,
    /// (start, length) in `text` of node i's name.
    pub(super) spans: Vec<(u32, u32)>,
}

impl Names {
    pub(super) fn get(&self, i: u32) -> &str {
        let (start, len) = self.spans[i as usize];
        &self.text[start as usize..(start + len) as usize]
    }

    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }
}

/// Everything needed to render any blocked plugin's texts, shared by all
/// [`Blocked`] values of one resolution (and by its load and stop orders,
/// which are node indices).
#[derive(Default)]
pub(super) struct Explain {
    names: Names,
    pub(super) recs: Vec<Rec>,
    pub(super) issues: Vec<Issue>,
    /// Pre-failure texts and names of plugins outside the set.
    pub(super) strings: Vec<String>,
    /// (range required, version found) of out-of-range entries.
    pub(super) ranges: Vec<(VersionReq, Version)>,
    /// Per component with a cycle: its root (smallest member) and the
    /// root's first dependency in it. A member's cycle is found from these
    /// and the two trees below when it is rendered ([`Explain::cycle_path`]),
    /// so a 10 000-plugin component costs no walk per member when resolved.
    pub(super) cycles: Vec<(u32, u32)>,
    /// Per node in such a component: its predecessor on a shortest path
    /// from the root (forward BFS), and the next node on a shortest path to
    /// the root (backward BFS); meaningless elsewhere. Empty without cycles.
    pub(super) parent_fwd: Vec<u32>,
    pub(super) parent_bwd: Vec<u32>,
}

const UNKNOWN_CONTROLLER: &str = "the controller's running plugins are unknown";

impl Explain {
    pub(super) fn new(names: Names) -> Explain {
        Explain {
            recs: vec![Rec::LOADS; names.len()],
            names,
            ..Explain::default()
        }
    }

    pub(super) fn name(&self, i: u32) -> &str {
        self.names.get(i)
    }

    pub(super) fn push_string(&mut self, s: &str) -> u32 {
        self.strings.push(s.to_owned());
        (self.strings.len() - 1) as u32
    }

    pub(super) fn push_range(&mut self, req: &VersionReq, found: &Version) -> u32 {
        self.ranges.push((req.clone(), found.clone()));
        (self.ranges.len() - 1) as u32
    }

    fn rec(&self, i: u32) -> &Rec {
        &self.recs[i as usize]
    }

    fn issues_of(&self, i: u32) -> &[Issue] {
        let r = self.rec(i);
        &self.issues[r.first as usize..r.end as usize]
    }

    /// The issue that is plugin i's primary reason, if it has no own one.
    fn primary(&self, i: u32) -> Option<Issue> {
        let r = self.rec(i);
        if r.own != Own::None || r.cycle != NONE {
            return None;
        }
        self.issues_of(i).first().copied()
    }

    /// The name an issue is about.
    fn dep(&self, issue: Issue) -> &str {
        match issue {
            Issue::Missing { dep }
            | Issue::CtrlUnknown { dep }
            | Issue::CtrlMissing { dep }
            | Issue::CtrlOutOfRange { dep, .. } => &self.strings[dep as usize],
            Issue::Disabled { node } | Issue::OutOfRange { node, .. } | Issue::Blocked { node } => {
                self.name(node)
            }
        }
    }

    fn range(&self, range: u32) -> (&VersionReq, &Version) {
        let (req, found) = &self.ranges[range as usize];
        (req, found)
    }

    /// The chain through `t`: `t`, then the chain `t` continues with,
    /// keeping at most [`MAX_CHAIN`] names (the first ones and the root
    /// cause), and the number left out.
    fn chain_through(&self, t: u32) -> (Vec<&str>, usize) {
        let total = 1 + self.rec(t).len as usize;
        let mut names = Vec::with_capacity(total.min(MAX_CHAIN));
        let keep = if total > MAX_CHAIN {
            MAX_CHAIN - 1
        } else {
            total
        };
        names.push(self.name(t));
        let mut x = t;
        while names.len() < keep {
            let r = self.rec(x);
            if r.via != NONE {
                names.push(self.name(r.via));
                x = r.via;
            } else {
                match self.primary(x) {
                    Some(issue) if r.len == 1 => names.push(self.dep(issue)),
                    _ => break,
                }
            }
        }
        if total > MAX_CHAIN {
            names.extend(self.root(t));
        }
        (names, total.saturating_sub(MAX_CHAIN))
    }

    /// The last name of the chain plugin `t` continues with (`None` when
    /// `t` is where its problem starts).
    fn root(&self, t: u32) -> Option<&str> {
        let r = self.rec(t);
        if r.len == 0 {
            return None;
        }
        let last = r.last;
        match self.primary(last) {
            // The chain ends in an entry naming another plugin.
            Some(issue) if self.rec(last).len == 1 => Some(self.dep(issue)),
            _ => Some(self.name(last)),
        }
    }

    /// What is wrong where the chain of blocked plugin `t` ends, e.g.
    /// `failed: license expired` or `is not installed`.
    fn cause(&self, t: u32) -> String {
        let last = self.rec(t).last;
        let r = self.rec(last);
        match r.own {
            Own::Duplicate(_) => return "is installed more than once".into(),
            Own::Disabled => return "is disabled (enable: false)".into(),
            Own::Failed(f) => return format!("failed: {}", self.strings[f as usize]),
            Own::None => {}
        }
        if r.cycle != NONE {
            return format!("is in a dependency cycle: {}", self.cycle_text(last));
        }
        let name = self.name(last);
        match self.primary(last) {
            Some(Issue::Missing { .. }) => "is not installed".into(),
            Some(Issue::Disabled { .. }) => "is disabled (enable: false)".into(),
            Some(Issue::OutOfRange { range, .. }) => {
                let (req, found) = self.range(range);
                format!("is version {found}, but {name} requires {req}")
            }
            Some(Issue::CtrlUnknown { .. }) => {
                format!("is a controller plugin, and {UNKNOWN_CONTROLLER}")
            }
            Some(Issue::CtrlMissing { .. }) => {
                "is a controller plugin that is not running on the controller".into()
            }
            Some(Issue::CtrlOutOfRange { range, .. }) => {
                let (req, found) = self.range(range);
                format!("is a controller plugin that runs on the controller in version {found}, but {name} requires {req}")
            }
            // A blocked dependency always has a chain end above; kept for
            // totality.
            Some(Issue::Blocked { .. }) | None => "cannot load".into(),
        }
    }

    /// A simple cycle through cycle member `x`, starting with it: the walk
    /// `x` -> root (backward tree), then root -> `x` (forward tree), without
    /// its loops. In O(length of the walk).
    fn cycle_path(&self, x: u32) -> Vec<u32> {
        let r = self.rec(x);
        let Some(&(root, root_next)) = self.cycles.get(r.cycle as usize) else {
            return vec![x];
        };
        let bwd = |v: u32| self.parent_bwd.get(v as usize).copied().unwrap_or(root);
        let fwd = |v: u32| self.parent_fwd.get(v as usize).copied().unwrap_or(root);
        let mut walk = vec![x];
        if r.self_loop {
            return walk;
        }
        if x == root {
            // root -> its first dependency in the component -> ... -> root.
            let mut v = root_next;
            while v != root {
                walk.push(v);
                v = bwd(v);
            }
        } else {
            let mut v = bwd(x);
            while v != root {
                walk.push(v);
                v = bwd(v);
            }
            // x's ancestors up to the root, walked root -> ... -> before x.
            let start = walk.len();
            let mut v = x;
            while v != root {
                v = fwd(v);
                walk.push(v);
            }
            walk[start..].reverse();
        }
        // Loop erasure: on meeting a node already on the path, cut the
        // path back to it.
        let mut position: HashMap<u32, usize> = HashMap::with_capacity(walk.len());
        let mut path: Vec<u32> = Vec::with_capacity(walk.len());
        for v in walk {
            match position.get(&v) {
                Some(&p) => {
                    for w in path.drain(p + 1..) {
                        position.remove(&w);
                    }
                }
                None => {
                    position.insert(v, path.len());
                    path.push(v);
                }
            }
        }
        path
    }

    /// The first [`MAX_CYCLE_SHOWN`] names of member `x`'s cycle, and its
    /// length.
    fn cycle_names(&self, x: u32) -> (Vec<&str>, usize) {
        let path = self.cycle_path(x);
        let names = path
            .iter()
            .take(MAX_CYCLE_SHOWN)
            .map(|&i| self.name(i))
            .collect();
        (names, path.len())
    }

    /// `a -> b -> c -> a`, with `-> ... (N more)` for a long one.
    fn cycle_text(&self, x: u32) -> String {
        let (names, length) = self.cycle_names(x);
        let shown = names.len();
        let names = names.into_iter();
        let mut text = String::new();
        let mut first = None;
        for (k, name) in names.enumerate() {
            if k > 0 {
                text.push_str(" -> ");
            }
            first.get_or_insert(name);
            text.push_str(name);
        }
        if length > shown {
            let _ = write!(text, " -> ... ({} more)", length - shown);
        }
        if let Some(first) = first {
            let _ = write!(text, " -> {first}");
        }
        text
    }

    /// The phrase and hint of issue `issue` of plugin `i`, spelled out in
    /// full (with the whole chain for a blocked dependency).
    fn spell_out(&self, i: u32, issue: Issue) -> (String, String) {
        let name = self.name(i);
        let d = self.dep(issue);
        match issue {
            Issue::Missing { .. } => (
                format!("depends on {d}, which is not installed"),
                format!("install {d}, or remove it from {name}'s \"depend\""),
            ),
            Issue::Disabled { .. } => (
                format!("depends on {d}, which is disabled (enable: false)"),
                format!("enable {d}, or remove it from {name}'s \"depend\""),
            ),
            Issue::OutOfRange { range, .. } => {
                let (req, found) = self.range(range);
                (
                    format!("depends on {d}, which is version {found}, but {name} requires {req}"),
                    format!(
                        "install a version of {d} matching {req}, or a version of {name} that accepts {d} {found}"
                    ),
                )
            }
            Issue::Blocked { node } => {
                let (chain, elided) = self.chain_through(node);
                let root = chain.last().copied().unwrap_or(d);
                (
                    format!(
                        "depends on {}",
                        chain_text(&chain, elided, &self.cause(node))
                    ),
                    format!("fix {root} first: the chain starts there"),
                )
            }
            Issue::CtrlUnknown { .. } => (
                format!(
                    "needs controller plugin {d} (ctrlDepend), but {UNKNOWN_CONTROLLER}, so this cannot be checked"
                ),
                "connect to the controller (or give its running plugin list) and try again".into(),
            ),
            Issue::CtrlMissing { .. } => (
                format!(
                    "needs controller plugin {d} (ctrlDepend), which is not running on the controller"
                ),
                format!(
                    "install and enable controller plugin {d} on the controller, or remove it from {name}'s \"ctrlDepend\""
                ),
            ),
            Issue::CtrlOutOfRange { range, .. } => {
                let (req, found) = self.range(range);
                (
                    format!(
                        "needs controller plugin {d} (ctrlDepend), which runs on the controller in version {found}, but {name} requires {req}"
                    ),
                    format!(
                        "install controller plugin {d} in a version matching {req}, or a version of {name} that accepts {d} {found}"
                    ),
                )
            }
        }
    }

    /// The phrase of a secondary issue: one line, with the root cause of a
    /// blocked dependency but not the whole chain.
    fn short_phrase(&self, i: u32, issue: Issue) -> String {
        match issue {
            Issue::Blocked { node } => {
                let d = self.name(node);
                if !self.rec(node).blocked {
                    return format!("depends on {d}, which cannot load");
                }
                match self.root(node) {
                    Some(root) => format!(
                        "depends on {d}, which cannot load because {root} {}",
                        self.cause(node)
                    ),
                    None => format!("depends on {d}, which {}", self.cause(node)),
                }
            }
            other => self.spell_out(i, other).0,
        }
    }

    fn reason(&self, i: u32) -> BlockReason {
        let r = self.rec(i);
        match r.own {
            Own::Duplicate(count) => {
                return BlockReason::DuplicateName {
                    count: count as usize,
                }
            }
            Own::Disabled => return BlockReason::Disabled,
            Own::Failed(f) => return BlockReason::Failed(self.strings[f as usize].clone()),
            Own::None => {}
        }
        if r.cycle != NONE {
            let (names, length) = self.cycle_names(i);
            return BlockReason::Cycle {
                members: names.into_iter().map(str::to_owned).collect(),
                length,
            };
        }
        let Some(issue) = self.primary(i) else {
            // Not blocked; a `Blocked` is only made for blocked plugins.
            return BlockReason::Failed("cannot load".into());
        };
        let dep = self.dep(issue).to_owned();
        match issue {
            Issue::Missing { .. } => BlockReason::MissingDependency { dep },
            Issue::Disabled { .. } => BlockReason::DependencyDisabled { dep },
            Issue::OutOfRange { range, .. } => {
                let (req, found) = self.range(range);
                BlockReason::DependencyOutOfRange {
                    dep,
                    required: req.clone(),
                    found: found.clone(),
                }
            }
            Issue::Blocked { node } => {
                let (chain, elided) = self.chain_through(node);
                BlockReason::DependencyFailed {
                    dep,
                    chain: chain.into_iter().map(str::to_owned).collect(),
                    elided,
                    cause: self.cause(node),
                }
            }
            Issue::CtrlUnknown { .. } => BlockReason::ControllerStateUnknown { dep },
            Issue::CtrlMissing { .. } => BlockReason::MissingControllerDependency { dep },
            Issue::CtrlOutOfRange { range, .. } => {
                let (req, found) = self.range(range);
                BlockReason::ControllerDependencyOutOfRange {
                    dep,
                    required: req.clone(),
                    found: found.clone(),
                }
            }
        }
    }

    /// The problem code of plugin i's primary reason, without rendering it.
    fn code(&self, i: u32) -> ProblemCode {
        let r = self.rec(i);
        match r.own {
            Own::Duplicate(_) => return ProblemCode::GraphDuplicateName,
            Own::Disabled => return ProblemCode::GraphDisabled,
            Own::Failed(_) => return ProblemCode::GraphPluginFailed,
            Own::None => {}
        }
        if r.cycle != NONE {
            return ProblemCode::GraphCycle;
        }
        match self.primary(i) {
            Some(Issue::Missing { .. }) => ProblemCode::GraphMissingDependency,
            Some(Issue::Disabled { .. }) => ProblemCode::GraphDependencyDisabled,
            Some(Issue::OutOfRange { .. }) => ProblemCode::GraphDependencyVersion,
            Some(Issue::Blocked { .. }) => ProblemCode::GraphDependencyFailed,
            Some(Issue::CtrlUnknown { .. }) => ProblemCode::GraphCtrlStateUnknown,
            Some(Issue::CtrlMissing { .. }) => ProblemCode::GraphMissingCtrlDependency,
            Some(Issue::CtrlOutOfRange { .. }) => ProblemCode::GraphCtrlDependencyVersion,
            None => ProblemCode::GraphPluginFailed,
        }
    }

    /// All of plugin i's problems in one sentence: the primary one in full,
    /// the others with their root cause only.
    fn message(&self, i: u32) -> String {
        let name = self.name(i);
        let r = self.rec(i);
        match r.own {
            Own::Duplicate(count) => {
                return format!("{name} cannot load: {count} plugins named {name} are in the set")
            }
            Own::Disabled => {
                return format!("{name} is not loaded: it is disabled (enable: false)")
            }
            Own::Failed(_) | Own::None => {}
        }
        let mut phrases: Vec<String> = Vec::new();
        if let Own::Failed(f) = r.own {
            phrases.push(self.strings[f as usize].clone());
        }
        if r.cycle != NONE {
            phrases.push(format!(
                "it is in a dependency cycle: {}",
                self.cycle_text(i)
            ));
        }
        let mut issues = self.issues_of(i).iter().copied();
        if phrases.is_empty() {
            if let Some(issue) = issues.next() {
                phrases.push(self.spell_out(i, issue).0);
            }
        }
        phrases.extend(issues.map(|issue| self.short_phrase(i, issue)));
        format!("{name} cannot load: {}", phrases.join("; "))
    }

    /// What to do about plugin i's primary reason.
    fn hint(&self, i: u32) -> String {
        let name = self.name(i);
        let r = self.rec(i);
        match r.own {
            Own::Duplicate(_) => return format!("keep exactly one plugin named {name}"),
            Own::Disabled => {
                return format!("set \"enable\": true in {name}.json if it should run")
            }
            Own::Failed(_) => return format!("fix {name}'s problem shown above"),
            Own::None => {}
        }
        if r.cycle != NONE {
            return "break the cycle by removing one of its \"depend\" entries".into();
        }
        match self.primary(i) {
            Some(issue) => self.spell_out(i, issue).1,
            None => String::new(),
        }
    }
}

/// "b, which depends on a, which failed: license expired" for a chain.
fn chain_text(names: &[&str], elided: usize, cause: &str) -> String {
    let mut s = String::new();
    let last = names.len().saturating_sub(1);
    for (k, name) in names.iter().enumerate() {
        if k > 0 {
            s.push_str(", which depends on ");
        }
        if k == last && k > 0 && elided > 0 {
            let _ = write!(s, "[{elided} more plugin(s)], which depends on ");
        }
        s.push_str(name);
    }
    let _ = write!(s, ", which {cause}");
    s
}

/// A plugin that cannot load. Its texts are rendered from the resolution's
/// compact record each time they are asked for, so ask once and keep the
/// result when it is used more than once.
#[derive(Clone)]
pub struct Blocked {
    explain: Arc<Explain>,
    node: u32,
}

impl Blocked {
    pub(super) fn new(explain: Arc<Explain>, node: u32) -> Blocked {
        Blocked { explain, node }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.explain.name(self.node)
    }

    /// The primary reason.
    pub fn reason(&self) -> BlockReason {
        self.explain.reason(self.node)
    }

    /// The primary reason's problem code (as [`BlockReason::code`]), without
    /// building the reason.
    pub fn code(&self) -> ProblemCode {
        self.explain.code(self.node)
    }

    /// All of the plugin's problems in one sentence, e.g.
    /// `b cannot load: depends on a, which failed: license expired`.
    pub fn message(&self) -> String {
        self.explain.message(self.node)
    }

    /// What to do about the primary reason.
    pub fn hint(&self) -> String {
        self.explain.hint(self.node)
    }

    /// The same as a [`Problem`] about plugin `name` of `side`.
    /// Its code is the primary reason's ([`BlockReason::code`]).
    pub fn to_problem(&self, side: Side, name: &str) -> Problem {
        Problem::new(self.code(), side.subject(name), self.message(), self.hint())
    }
}

/// The rendered form, as the derived implementations of the former struct
/// with public fields wrote it: `{"reason", "message", "hint"}`.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename = "Blocked")]
struct Rendered {
    reason: BlockReason,
    message: String,
    hint: String,
}

impl Blocked {
    fn rendered(&self) -> Rendered {
        Rendered {
            reason: self.reason(),
            message: self.message(),
            hint: self.hint(),
        }
    }
}

impl Serialize for Blocked {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.rendered().serialize(serializer)
    }
}

impl fmt::Debug for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rendered();
        f.debug_struct("Blocked")
            .field("reason", &r.reason)
            .field("message", &r.message)
            .field("hint", &r.hint)
            .finish()
    }
}

/// Equal when everything it reports is equal.
impl PartialEq for Blocked {
    fn eq(&self, other: &Blocked) -> bool {
        self.rendered() == other.rendered()
    }
}

impl Eq for Blocked {}
