//! Crash consistency of the install store: the `store-driver` process is
//! killed with SIGKILL at every failpoint of commit, rollback and recovery,
//! and at seeded random instants during a commit of 200+ files and during a
//! rollback. After every kill the test takes the lock (which runs recovery)
//! and asserts that the root holds exactly the old or exactly the new
//! installation (every file's bytes, versions, enabled flags, the previous
//! generation kept for rollback), with no leftovers and a valid `current`.
//!
//! Environment: `XPLUGIN_CRASH_SEED` (u64) changes the random kill times,
//! `XPLUGIN_CRASH_ITERATIONS` the number of random commit kills (default 100; 50 when
//! `XPLUGIN_TEST_RUNNER` is set, rollback kills are a quarter of it),
//! `XPLUGIN_TEST_RUNNER` prefixes the driver (e.g. qemu-aarch64),
//! `XPLUGIN_CRASH_DIR` sets where the test roots live.
//!
//! The roots live on tmpfs (`/dev/shm`) when it exists: a SIGKILL leaves the
//! page cache intact, so fsync plays no part in what this test checks, and on
//! a disk every fsync costs milliseconds (a commit of 220 files takes about
//! 2 s on the CI disk, 200 times over). Power loss is not tested here.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use xplugin_store::failpoint::{FAILPOINTS, FAILPOINT_ENV};
use xplugin_store::Store;

use crate::store::{
    assert_clean, copy_dir, driver, installed, plugin, write_files, Model, PluginModel,
};

/// What a root holds, as far as old-or-new is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    number: u64,
    plugins: Model,
    /// The generation kept for rollback, with its contents.
    previous: Option<(u64, Model)>,
}

/// The fixture: version 1 and version 2 plugin sets, staged by the driver.
struct Fixture {
    _dir: tempfile::TempDir,
    v1_dir: PathBuf,
    v2_dir: PathBuf,
    v1: Model,
    v2: Model,
}

/// Makes the driver print "ready" when its operation starts.
const READY_ENV: &str = "XPLUGIN_DRIVER_READY";

const DATA_FILE: &str = "data/alpha/calibration.json";
const DATA_BYTES: &str = "{\"offset\": 42}";

fn many_files(tag: &str, range: std::ops::Range<usize>) -> BTreeMap<String, Vec<u8>> {
    range
        .map(|i| {
            let path = format!("d{}/f{i:03}.bin", i % 10);
            (path, format!("{tag} file {i}\n").repeat(40).into_bytes())
        })
        .collect()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut alpha1 = plugin("1.0.0", true, &[("libalpha.so", "alpha one")]);
    alpha1.files.extend(many_files("alpha v1", 0..200));
    let mut beta = plugin(
        "1.0.0",
        false,
        &[("libbeta.so", "beta"), ("qml/Beta.qml", "Item {}")],
    );
    let gamma = plugin("1.0.0", true, &[("libgamma.so", "gamma")]);
    // v2: alpha replaced (150 paths changed, 50 gone, 50 new) and disabled,
    // beta carried over, gamma removed, delta added.
    let mut alpha2 = plugin("2.0.0", false, &[("libalpha.so", "alpha two")]);
    alpha2.files.extend(many_files("alpha v2", 50..250));
    let mut delta = plugin("0.3.0", true, &[]);
    delta.files.extend(many_files("delta", 0..20));
    // Configuration values switch with their generation: beta's are carried
    // over, alpha's replaced, delta's new, gamma's gone.
    for (m, text) in [
        (&mut alpha1, "alpha v1 values"),
        (&mut alpha2, "alpha v2 values"),
        (&mut beta, "beta values"),
        (&mut delta, "delta values"),
    ] {
        m.values = Some(text.as_bytes().to_vec());
    }

    let v1: Model = [("alpha", &alpha1), ("beta", &beta), ("gamma", &gamma)]
        .into_iter()
        .map(|(n, m)| (n.to_string(), m.clone()))
        .collect();
    let v2: Model = [("alpha", &alpha2), ("beta", &beta), ("delta", &delta)]
        .into_iter()
        .map(|(n, m)| (n.to_string(), m.clone()))
        .collect();

    let v1_dir = dir.path().join("v1");
    let v2_dir = dir.path().join("v2");
    let flag = |m: &PluginModel| if m.enabled { "enabled" } else { "disabled" };
    let mut plan1 = String::new();
    let write_values = |dir: &Path, name: &str, m: &PluginModel| {
        if let Some(v) = &m.values {
            std::fs::write(dir.join(format!("{name}.values")), v).unwrap();
        }
    };
    for (name, m) in &v1 {
        write_files(&v1_dir.join(name), &m.files);
        write_values(&v1_dir, name, m);
        plan1 += &format!("add {name} {} {}\n", m.version, flag(m));
    }
    std::fs::write(v1_dir.join("plan.txt"), plan1).unwrap();
    let mut plan2 = String::new();
    for name in ["alpha", "delta"] {
        let m = &v2[name];
        write_files(&v2_dir.join(name), &m.files);
        write_values(&v2_dir, name, m);
        plan2 += &format!("add {name} {} {}\n", m.version, flag(m));
    }
    plan2 += "remove gamma\n";
    std::fs::write(v2_dir.join("plan.txt"), plan2).unwrap();
    Fixture {
        _dir: dir,
        v1_dir,
        v2_dir,
        v1,
        v2,
    }
}

/// Starts the driver with `XPLUGIN_DRIVER_READY` set and waits for its
/// "ready" line: process start-up (slow under qemu) is over, the operation
/// begins.
fn spawn_ready(root: &Path, args: &[&Path]) -> (Child, Instant) {
    let mut child = driver()
        .arg(root)
        .args(args)
        .env(READY_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"ready\n");
    (child, Instant::now())
}

/// Runs the driver to completion and asserts success; returns how long the
/// operation took, as the driver measured it (from "ready" to done).
fn run_ok(root: &Path, args: &[&Path]) -> Duration {
    let (child, _) = spawn_ready(root, args);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "driver {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let nanos = stdout
        .trim()
        .strip_prefix("took ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("driver printed {stdout:?}, expected \"took NANOS\""));
    Duration::from_nanos(nanos)
}

/// The median duration of three unkilled runs on fresh copies of `pristine`.
fn calibrate(roots: &mut Roots, pristine: &Path, args: &[&Path]) -> Duration {
    let mut times: Vec<Duration> = (0..3)
        .map(|_| {
            let root = roots.fresh_copy(pristine);
            let took = run_ok(&root, args);
            std::fs::remove_dir_all(&root).unwrap();
            took
        })
        .collect();
    times.sort();
    times[1]
}

/// Runs the driver with one failpoint armed and asserts it was SIGKILLed.
fn run_killed_at(root: &Path, args: &[&Path], failpoint: &str) {
    let out = driver()
        .arg(root)
        .args(args)
        .env(FAILPOINT_ENV, failpoint)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "failpoint {failpoint} did not kill the driver ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the driver, SIGKILLs it `delay` after it said "ready" (if still
/// running).
fn run_killed_after(root: &Path, args: &[&Path], delay: Duration) -> ExitStatus {
    let (mut child, ready) = spawn_ready(root, args);
    std::thread::sleep(delay.saturating_sub(ready.elapsed()));
    let _ = child.kill();
    child.wait().unwrap()
}

/// Recovers `root` (takes the lock) and reads what it holds; asserts no
/// leftovers, valid `current`, fixed modes and untouched plugin data.
/// Returns whether recovery had anything to clean.
fn observe(root: &Path) -> (Observed, bool) {
    let store = Store::open(root).unwrap();
    let lock = store.lock().unwrap();
    let cleaned = !lock.recovery().is_empty();
    assert!(
        lock.recovery().problems.is_empty(),
        "{:?}",
        lock.recovery().problems
    );
    let (generation, plugins) = installed(&store).expect("an installation (old or new)");
    let previous = store.previous().unwrap().map(|p| {
        let m = crate::store::read_generation(&p);
        (p.number, m)
    });
    assert_eq!(
        previous.as_ref().map(|p| p.0),
        generation
            .state
            .previous
            .filter(|n| root.join("generations").join(n.to_string()).exists())
    );
    assert_clean(&store);
    assert_eq!(
        std::fs::read_to_string(root.join(DATA_FILE)).unwrap(),
        DATA_BYTES
    );
    drop(lock);
    (
        Observed {
            number: generation.number,
            plugins,
            previous,
        },
        cleaned,
    )
}

struct Roots {
    base: tempfile::TempDir,
    counter: usize,
}

impl Roots {
    fn fresh_empty(&mut self) -> PathBuf {
        self.counter += 1;
        self.base.path().join(format!("r{}", self.counter))
    }

    fn fresh_copy(&mut self, pristine: &Path) -> PathBuf {
        self.counter += 1;
        let root = self.base.path().join(format!("r{}", self.counter));
        // A leftover from an earlier run of this test would break copy_dir.
        let _ = std::fs::remove_dir_all(&root);
        copy_dir(pristine, &root);
        root
    }
}

/// One series of kills at random instants.
struct RandomKills<'a> {
    name: &'static str,
    pristine: &'a Path,
    args: &'a [&'a Path],
    /// How long the operation takes unkilled; kills land in [0, 1.5 x this).
    duration: Duration,
    count: u64,
    old: &'a Observed,
    new: &'a Observed,
}

/// splitmix64: a tiny seeded generator, enough for reproducible kill times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max).
    fn below(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(self.next() % nanos)
    }
}

/// A fresh directory for the test roots: `XPLUGIN_CRASH_DIR`, else tmpfs at
/// `/dev/shm` if usable, else the default temporary directory.
fn crash_dir() -> tempfile::TempDir {
    if let Ok(dir) = std::env::var("XPLUGIN_CRASH_DIR") {
        return tempfile::tempdir_in(dir).unwrap();
    }
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn killed_at_any_point_leaves_old_or_new() {
    let started = Instant::now();
    let fx = fixture();
    let mut roots = Roots {
        base: crash_dir(),
        counter: 0,
    };
    let commit_v1: [&Path; 2] = [Path::new("commit"), &fx.v1_dir];
    let commit_v2: [&Path; 2] = [Path::new("commit"), &fx.v2_dir];
    let rollback: [&Path; 1] = [Path::new("rollback")];
    let recover: [&Path; 1] = [Path::new("recover")];

    // Pristine roots: v1 installed (with plugin data), and v1 then v2.
    let pristine_v1 = roots.base.path().join("pristine-v1");
    run_ok(&pristine_v1, &commit_v1);
    std::fs::create_dir_all(pristine_v1.join("data/alpha")).unwrap();
    std::fs::write(pristine_v1.join(DATA_FILE), DATA_BYTES).unwrap();
    let pristine_v2 = roots.base.path().join("pristine-v2");
    copy_dir(&pristine_v1, &pristine_v2);
    run_ok(&pristine_v2, &commit_v2);

    let v1_only = Observed {
        number: 1,
        plugins: fx.v1.clone(),
        previous: None,
    };
    let v2_over_v1 = Observed {
        number: 2,
        plugins: fx.v2.clone(),
        previous: Some((1, fx.v1.clone())),
    };
    assert_eq!(observe(&pristine_v1).0, v1_only);
    assert_eq!(observe(&pristine_v2).0, v2_over_v1);
    let commit_time = calibrate(&mut roots, &pristine_v1, &commit_v2);
    let rollback_time = calibrate(&mut roots, &pristine_v2, &rollback);

    let mut iterations = 0usize;

    // 1. Every commit and rollback failpoint, with its exact expected outcome.
    for &fp in FAILPOINTS {
        let (pristine, args, old, new): (&Path, &[&Path], &Observed, &Observed) =
            if fp.starts_with("commit-") {
                (&pristine_v1, &commit_v2, &v1_only, &v2_over_v1)
            } else if fp.starts_with("rollback-") {
                (&pristine_v2, &rollback, &v2_over_v1, &v1_only)
            } else {
                continue;
            };
        let switched = ["after-swap", "after-trash-rename", "after-cleanup"]
            .iter()
            .any(|s| fp.ends_with(s));
        let root = roots.fresh_copy(pristine);
        run_killed_at(&root, args, fp);
        let (seen, _) = observe(&root);
        assert_eq!(
            &seen,
            if switched { new } else { old },
            "after kill at {fp}"
        );
        std::fs::remove_dir_all(&root).unwrap();
        iterations += 1;
    }

    // 2. Every recovery failpoint, starting from leftovers of a kill in the
    //    middle of a commit or rollback; recovery itself is killed, then run
    //    again.
    let leftovers: [(&str, &Path, &[&Path], &Observed); 5] = [
        (
            "commit-after-files-fsynced",
            &pristine_v1,
            &commit_v2,
            &v1_only,
        ),
        (
            "commit-after-gen-rename",
            &pristine_v1,
            &commit_v2,
            &v1_only,
        ),
        (
            "commit-after-tmp-symlink",
            &pristine_v1,
            &commit_v2,
            &v1_only,
        ),
        ("commit-after-swap", &pristine_v1, &commit_v2, &v2_over_v1),
        ("rollback-after-swap", &pristine_v2, &rollback, &v1_only),
    ];
    for &fp in FAILPOINTS.iter().filter(|f| f.starts_with("recovery-")) {
        for (first, pristine, args, expected) in &leftovers {
            let root = roots.fresh_copy(pristine);
            run_killed_at(&root, args, first);
            run_killed_at(&root, &recover, fp);
            let (seen, _) = observe(&root);
            assert_eq!(&seen, *expected, "after kill at {first}, then at {fp}");
            std::fs::remove_dir_all(&root).unwrap();
            iterations += 1;
        }
    }
    // 3. The very first install into an empty root, killed at every commit
    //    failpoint: afterwards the root is empty (no `current`, nothing in
    //    generations/) or holds exactly v1.
    for &fp in FAILPOINTS.iter().filter(|f| f.starts_with("commit-")) {
        let root = roots.fresh_empty();
        run_killed_at(&root, &commit_v1, fp);
        let store = Store::open(&root).unwrap();
        let lock = store.lock().unwrap();
        let switched = ["after-swap", "after-trash-rename", "after-cleanup"]
            .iter()
            .any(|s| fp.ends_with(s));
        match installed(&store) {
            None => {
                assert!(!switched, "first install killed at {fp}: root is empty");
                let left: Vec<_> = std::fs::read_dir(root.join("generations"))
                    .unwrap()
                    .collect();
                assert!(left.is_empty(), "first install killed at {fp}: {left:?}");
            }
            Some((generation, plugins)) => {
                assert!(switched, "first install killed at {fp}: already installed");
                assert_eq!((generation.number, generation.state.previous), (1, None));
                assert_eq!(plugins, fx.v1, "first install killed at {fp}");
            }
        }
        assert_clean(&store);
        drop(lock);
        std::fs::remove_dir_all(&root).unwrap();
        iterations += 1;
    }
    let failpoint_iterations = iterations;

    // 4. Random kills during a commit and during a rollback.
    let seed = env_u64("XPLUGIN_CRASH_SEED", 0x5EED_2026_1122);
    // Under qemu every driver start costs a fraction of a second: fewer
    // random kills there, still over 100 kills in total.
    let emulated = std::env::var("XPLUGIN_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty());
    let random_commits = env_u64("XPLUGIN_CRASH_ITERATIONS", if emulated { 50 } else { 100 });
    let mut rng = Rng(seed);
    let mut tally: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut mid_operation = 0usize;
    let plans = [
        RandomKills {
            name: "commit",
            pristine: &pristine_v1,
            args: &commit_v2,
            duration: commit_time,
            count: random_commits,
            old: &v1_only,
            new: &v2_over_v1,
        },
        RandomKills {
            name: "rollback",
            pristine: &pristine_v2,
            args: &rollback,
            duration: rollback_time,
            count: random_commits / 4,
            old: &v2_over_v1,
            new: &v1_only,
        },
    ];
    for RandomKills {
        name,
        pristine,
        args,
        duration,
        count,
        old,
        new,
    } in plans
    {
        for _ in 0..count {
            let root = roots.fresh_copy(pristine);
            let delay = rng.below(duration.mul_f64(1.5));
            let status = run_killed_after(&root, args, delay);
            let (seen, cleaned) = observe(&root);
            let outcome = if &seen == old {
                "old"
            } else if &seen == new {
                "new"
            } else {
                panic!(
                    "{name} killed after {delay:?} (seed {seed}): neither old nor new: {seen:#?}"
                );
            };
            if status.signal().is_none() {
                assert!(status.success(), "{name} driver failed: {status:?}");
                assert_eq!(outcome, "new", "{name} finished but the root is not new");
            }
            if cleaned {
                mid_operation += 1;
            }
            *tally.entry((name, outcome)).or_default() += 1;
            std::fs::remove_dir_all(&root).unwrap();
            iterations += 1;
        }
    }
    eprintln!(
        "crash test: {iterations} kills ({failpoint_iterations} at failpoints, {} random, seed {seed:#x}); \
         random outcomes {tally:?}; {mid_operation} random kills left leftovers that recovery removed; \
         commit of v2 takes {commit_time:?}, rollback {rollback_time:?}; total {:?}",
        iterations - failpoint_iterations,
        started.elapsed()
    );
    assert!(iterations >= 100, "only {iterations} iterations");
    // The random kills must really land inside the operations, not only
    // before or after them: some must have left leftovers for recovery.
    // (Which of old/new a random kill yields depends on timing and is only
    // reported; the failpoints above pin both outcomes deterministically.)
    assert!(mid_operation > 0, "no random kill interrupted an operation");
}
