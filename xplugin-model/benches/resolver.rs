//! Resolver benchmark: 10 000 plugins and 50 000 random dependency edges
//! (seeded, so every run measures the same graphs).
//!
//! Run: `CARGO_TARGET_DIR=/work/targets/model cargo bench -p xplugin-model`

use std::collections::HashSet;
use xplugin_model::manifest::Dependency;
use xplugin_model::{resolve, BlockReason, Node, ResolveInput, Side, Version};

const PLUGINS: usize = 10_000;
const EDGES: usize = 50_000;

fn main() {
    divan::main();
}

/// xorshift64*: a tiny seeded generator, no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `acyclic`: edges only go from a plugin to one earlier in a random
/// topological order (unrelated to name order). Otherwise any direction.
/// `failed_every`: every n-th plugin (by topological position) has a pre-failure.
fn graph(seed: u64, acyclic: bool, failed_every: Option<usize>) -> ResolveInput {
    let mut rng = Rng(seed);
    // Names in a shuffled order so the topological order is not the name order.
    let mut names: Vec<String> = (0..PLUGINS)
        .map(|i| format!("vendor.plugin-{i:05}"))
        .collect();
    for i in (1..names.len()).rev() {
        names.swap(i, rng.below(i + 1));
    }
    let mut edges: HashSet<(usize, usize)> = HashSet::with_capacity(EDGES);
    while edges.len() < EDGES {
        let a = rng.below(PLUGINS);
        let b = rng.below(PLUGINS);
        if a == b {
            continue;
        }
        let edge = if acyclic {
            (a.max(b), a.min(b))
        } else {
            (a, b)
        };
        edges.insert(edge);
    }
    let mut depend: Vec<Vec<Dependency>> = vec![Vec::new(); PLUGINS];
    let mut sorted: Vec<(usize, usize)> = edges.into_iter().collect();
    sorted.sort_unstable();
    for (from, to) in sorted {
        depend[from].push(Dependency::any(names[to].clone()));
    }
    let version = Version::parse("1.0.2.6").unwrap_or_else(|e| panic!("{e}"));
    let plugins = depend
        .into_iter()
        .enumerate()
        .map(|(i, depend)| Node {
            name: names[i].clone(),
            version: version.clone(),
            side: Side::Controller,
            load: true,
            depend,
            ctrl_depend: Vec::new(),
            failure: failed_every
                .filter(|every| i % every == 0)
                .map(|_| "license expired".to_string()),
        })
        .collect();
    ResolveInput {
        plugins,
        running_controller: None,
    }
}

#[divan::bench(sample_count = 100)]
fn acyclic_all_load(bencher: divan::Bencher) {
    let input = graph(0x5EED_0001, true, None);
    let check = resolve(&input);
    assert_eq!(
        check.load_order.len(),
        PLUGINS,
        "the benchmark graph must load fully"
    );
    bencher.bench(|| resolve(divan::black_box(&input)));
}

#[divan::bench(sample_count = 30)]
fn acyclic_one_percent_failed(bencher: divan::Bencher) {
    let input = graph(0x5EED_0002, true, Some(100));
    let check = resolve(&input);
    assert!(!check.blocked.is_empty() && !check.load_order.is_empty());
    bencher.bench(|| resolve(divan::black_box(&input)));
}

#[divan::bench(sample_count = 30)]
fn random_with_cycles(bencher: divan::Bencher) {
    let input = graph(0x5EED_0003, false, None);
    let check = resolve(&input);
    assert!(check
        .blocked
        .values()
        .any(|b| matches!(b.reason(), BlockReason::Cycle { .. })));
    bencher.bench(|| resolve(divan::black_box(&input)));
}
