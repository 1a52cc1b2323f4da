//! Property tests of the resolver on random graphs, checked against a naive
//! model computed independently (reachability by BFS from every node).

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use xplugin_model::manifest::Dependency;
use xplugin_model::{
    resolve, BlockReason, Blocked, Node, Resolution, ResolveInput, Side, Version, VersionReq,
};

/// Per plugin: version (1..=4), loads, failed, and edges (target index,
/// which may be >= n meaning a missing plugin; optional minimum version).
type PluginSpec = (u8, bool, bool, Vec<(usize, Option<u8>)>);

#[derive(Debug, Clone)]
struct Spec {
    plugins: Vec<PluginSpec>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..24).prop_flat_map(|n| {
        let plugin = (
            1u8..5,
            prop::bool::weighted(0.93),
            prop::bool::weighted(0.07),
            prop::collection::vec((0..n + 2, prop::option::weighted(0.15, 1u8..5)), 0..4),
        );
        prop::collection::vec(plugin, n).prop_map(|plugins| Spec { plugins })
    })
}

fn name(i: usize) -> String {
    format!("p{i:02}")
}

fn nodes(spec: &Spec) -> Vec<Node> {
    spec.plugins
        .iter()
        .enumerate()
        .map(|(i, (version, load, failed, edges))| Node {
            name: name(i),
            version: Version::parse(&version.to_string()).unwrap_or_else(|e| panic!("{e}")),
            side: Side::Controller,
            load: *load,
            depend: edges
                .iter()
                .map(|(t, min)| Dependency {
                    name: name(*t),
                    req: min.map(|m| {
                        VersionReq::parse(&format!(">={m}")).unwrap_or_else(|e| panic!("{e}"))
                    }),
                })
                .collect(),
            ctrl_depend: Vec::new(),
            failure: failed.then(|| "license expired".to_string()),
        })
        .collect()
}

/// reach[i] = every node reachable from i through present dependencies (i included).
fn reachability(spec: &Spec) -> Vec<BTreeSet<usize>> {
    let n = spec.plugins.len();
    (0..n)
        .map(|s| {
            let mut seen = BTreeSet::from([s]);
            let mut todo = vec![s];
            while let Some(v) = todo.pop() {
                for &(t, _) in &spec.plugins[v].3 {
                    if t < n && seen.insert(t) {
                        todo.push(t);
                    }
                }
            }
            seen
        })
        .collect()
}

fn in_cycle(spec: &Spec, reach: &[BTreeSet<usize>], i: usize) -> bool {
    let n = spec.plugins.len();
    spec.plugins[i]
        .3
        .iter()
        .any(|&(t, _)| t < n && reach[t].contains(&i))
}

/// A node that cannot load by itself: disabled, failed, in a cycle, or with
/// an unsatisfiable entry (missing target or version out of range).
fn bad(spec: &Spec, reach: &[BTreeSet<usize>], i: usize) -> bool {
    let n = spec.plugins.len();
    let (_, load, failed, edges) = &spec.plugins[i];
    !load
        || *failed
        || in_cycle(spec, reach, i)
        || edges
            .iter()
            .any(|&(t, min)| t >= n || min.is_some_and(|m| spec.plugins[t].0 < m))
}

fn check(spec: &Spec, r: &Resolution) -> Result<(), TestCaseError> {
    let n = spec.plugins.len();
    let reach = reachability(spec);
    let loaded: BTreeMap<&str, usize> = r
        .load_order
        .iter()
        .enumerate()
        .map(|(k, s)| (s, k))
        .collect();
    prop_assert_eq!(loaded.len(), r.load_order.len(), "a plugin loads twice");
    prop_assert_eq!(
        loaded.len() + r.blocked.len(),
        n,
        "every plugin is loaded or blocked"
    );
    let stop: Vec<String> = r.load_order.iter().rev().map(str::to_owned).collect();
    prop_assert_eq!(&r.stop_order, &stop);

    for i in 0..n {
        let nm = name(i);
        let blocked_expected = reach[i].iter().any(|&j| bad(spec, &reach, j));
        prop_assert_eq!(
            r.blocked.contains_key(&nm),
            blocked_expected,
            "{} blocked? {:?}",
            nm,
            r.blocked.get(&nm)
        );
        if let Some(&k) = loaded.get(nm.as_str()) {
            // The order respects every edge.
            for &(t, _) in &spec.plugins[i].3 {
                let dep = name(t);
                let pos = loaded.get(dep.as_str());
                prop_assert!(
                    pos.is_some_and(|&p| p < k),
                    "{} loads before its dependency {}",
                    nm,
                    dep
                );
            }
        }
        let cyc = in_cycle(spec, &reach, i);
        let (_, load, failed, _) = spec.plugins[i];
        match r.blocked.get(&nm).map(Blocked::reason).as_ref() {
            Some(BlockReason::Cycle { members, length }) => {
                prop_assert!(cyc, "{} reported as a cycle but is not in one", nm);
                prop_assert_eq!(*length, members.len());
                prop_assert_eq!(members.first(), Some(&nm));
                let set: BTreeSet<&String> = members.iter().collect();
                prop_assert_eq!(
                    set.len(),
                    members.len(),
                    "cycle repeats a plugin: {:?}",
                    members
                );
                for (k, m) in members.iter().enumerate() {
                    let next = &members[(k + 1) % members.len()];
                    let from: usize = m[1..].parse().unwrap_or(usize::MAX);
                    prop_assert!(
                        spec.plugins
                            .get(from)
                            .is_some_and(|p| p.3.iter().any(|&(t, _)| &name(t) == next)),
                        "{} -> {} is not an edge",
                        m,
                        next
                    );
                }
            }
            other => {
                // Every cycle member is reported as Cycle unless an own reason comes first.
                prop_assert!(
                    !cyc || !load || failed,
                    "{} is in a cycle but reported {:?}",
                    nm,
                    other
                );
            }
        }
    }
    // Ties broken by name: each loaded plugin is the smallest name that was ready.
    let mut placed: BTreeSet<String> = BTreeSet::new();
    for nm in &r.load_order {
        let ready = (0..n)
            .map(name)
            .filter(|c| !placed.contains(c) && loaded.contains_key(c.as_str()))
            .find(|c| {
                let i: usize = c[1..].parse().unwrap_or(usize::MAX);
                spec.plugins[i]
                    .3
                    .iter()
                    .all(|&(t, _)| placed.contains(&name(t)))
            });
        prop_assert_eq!(ready.as_deref(), Some(nm));
        placed.insert(nm.to_owned());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn resolution_matches_the_naive_model(spec in spec()) {
        let r = resolve(&ResolveInput { plugins: nodes(&spec), running_controller: None });
        check(&spec, &r)?;
    }

    #[test]
    fn shuffled_input_gives_the_same_output(spec in spec(), seed in any::<u64>()) {
        let plugins = nodes(&spec);
        let mut shuffled = plugins.clone();
        // Fisher-Yates with a small LCG, so the permutation comes from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (state >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        let a = resolve(&ResolveInput { plugins, running_controller: None });
        let b = resolve(&ResolveInput { plugins: shuffled, running_controller: None });
        prop_assert_eq!(a, b);
    }
}
