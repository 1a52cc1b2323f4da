//! Power loss of the install store, on powerfs (`tests/src/powerfs`): a FUSE
//! file system that forgets at a power cut everything not made durable by
//! fsync of the file and of its directory (the model and its limits are
//! documented there).
//!
//! Every operation of a [`Case`] is first run once on a clean mount, which
//! enumerates its durability boundaries (every fsync, rename, link and
//! symlink, named by operation, ordinal and path, e.g. `upgrade#61 rename
//! generations/2.tmp -> generations/2`). Then, for every boundary k, the
//! operation runs again from the same image with power cut right after
//! boundary k (later requests fail with EIO), and the durable image is
//! mounted afresh, recovered (`Store::lock`) and checked:
//!
//! - the whole root (every path, type, mode, byte and symlink target; only
//!   `.lock`'s pid and `state.json`'s creation time are not compared) is
//!   exactly the old or the new installation, taken from clean runs whose
//!   contents were checked against the expected plugin sets through the
//!   store's API, so nothing else is left (no `.tmp`, trash, staging or
//!   `current.tmp`);
//! - every plugin of the current and the previous generation verifies
//!   against its signed license (every file's SHA-256);
//! - a power cut after the operation returned success leaves the new
//!   installation, and once a cut leaves the new one, every later cut does.
//!
//! Negative controls run the same enumeration against the store with its
//! directory fsyncs (or its file fsyncs) switched off
//! (`xplugin_store::failpoint::set_skip_fsync`, test builds only) and must
//! find damage, proving the harness sees what it exists for.
//!
//! Adding an operation is one more [`Case`]: a start image, a closure run
//! against the mounted root, and the installations expected before and
//! after.
//!
//! Without FUSE (no `/dev/fuse`, mount refused) the tests say so and pass,
//! unless `CI` is set: on CI a skip fails. Under qemu-user
//! (`XPLUGIN_TEST_RUNNER` set) they are skipped with a message, unless
//! `XPLUGIN_POWERLOSS_UNDER_EMULATOR` is set: FUSE does work under
//! qemu-aarch64, but the three tests take about 100 s there (14 s on the
//! host), the emulated store is exercised by the crash test, and what
//! survives a power cut depends on the order of the store's calls, not on
//! the architecture.
//!
//! Each test prints one summary line per operation (always, past the output
//! capture); `-- --nocapture` also lists every cut point with its outcome.
//!
//! A test still running after [`STUCK_AFTER`] prints where it is (the cut
//! point) and ends its mount's FUSE connection, so a call stuck on it fails
//! and the test fails naming the place, instead of holding CI until its
//! time runs out. Every unmount ends the connection first for the same
//! reason ([`Mount::unmount`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use xplugin_license::{
    generate_keypair, issue, normalize_device_id, sha256_file, verify_plugin_dir, LicensePayload,
    Side, TrustStore, VerifyContext,
};
use xplugin_model::Version;
use xplugin_store::failpoint::{set_skip_fsync, SkipFsync};
use xplugin_store::transaction::{DEFAULT_TIMEOUT, TRANSACTIONS_DIR};
use xplugin_store::{CommitPlan, StagedPlugin, Store, TransactionPlugin, ValuesFile};
use xplugin_tests::powerfs::{Aborter, Boundary, Image, Mount};

use crate::store::{installed, read_generation, Model, PluginModel};

/// This device (the licenses are bound to it).
const DEVICE: &str = "4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e";

/// The vendor: signs the plugins' licenses; the device trusts its key.
struct Vendor {
    key: SigningKey,
    key_id: String,
    trust: TrustStore,
    device: String,
    dir: tempfile::TempDir,
}

impl Vendor {
    fn new() -> Vendor {
        let (key, key_id) = generate_keypair(Some("powerloss-vendor")).unwrap();
        let mut trust = TrustStore::new();
        trust.insert(&key_id, key.verifying_key()).unwrap();
        Vendor {
            key,
            key_id,
            trust,
            device: normalize_device_id(DEVICE).unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A licensed controller plugin: `NAME.json`, `NAME.so`, `extra` more
    /// files in `qml/` and `share/data/`, and `NAME.lic` signing the SHA-256
    /// of all of them.
    fn plugin(&self, name: &str, version: &str, enabled: bool, extra: usize) -> PluginModel {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        files.insert(
            format!("{name}.json"),
            format!(
                "{{\"controller_plugin\": {{\"name\": \"{name}\", \"version\": \"{version}\"}}}}\n"
            )
            .into_bytes(),
        );
        files.insert(
            format!("{name}.so"),
            format!("\x7fELF {name} {version} code\n")
                .repeat(64)
                .into_bytes(),
        );
        for i in 0..extra {
            let path = if i % 2 == 0 {
                format!("qml/Item{i}.qml")
            } else {
                format!("share/data/table{i}.dat")
            };
            files.insert(
                path,
                format!("{name} {version} file {i}\n")
                    .repeat(20 + i)
                    .into_bytes(),
            );
        }
        let folder = self.dir.path().join(format!("{name}-{version}"));
        write_tree(&folder, &files).unwrap();
        let payload = LicensePayload {
            format: 1,
            key_id: self.key_id.clone(),
            license_id: format!("{name}-{version}"),
            plugin: name.into(),
            side: Side::Controller,
            versions: ">=0.1, <100".into(),
            devices: vec![self.device.clone()],
            issued_at: 1_790_000_000,
            not_before: None,
            expires: None,
            features: Vec::new(),
            files: files
                .keys()
                .map(|p| (p.clone(), sha256_file(&folder.join(p)).unwrap()))
                .collect(),
        };
        let license = issue(&payload, &self.key).unwrap();
        files.insert(format!("{name}.lic"), license.into_bytes());
        PluginModel {
            version: version.into(),
            enabled,
            files,
            // Values switch with their generation: a power cut must never
            // leave one generation's plugins with another's values.
            values: Some(
                format!("{{\"plugin\": \"{name}\", \"version\": \"{version}\"}}").into_bytes(),
            ),
        }
    }

    /// Verifies every plugin of `generation` against its license.
    fn verify(&self, generation: &xplugin_store::Generation) -> Result<(), String> {
        for plugin in generation.plugins() {
            let dir = generation
                .plugin_dir(&plugin.name)
                .ok_or_else(|| format!("no directory for {}", plugin.name))?;
            let version = Version::parse(&plugin.version).map_err(|e| e.to_string())?;
            let ctx = VerifyContext {
                plugin: &plugin.name,
                side: Side::Controller,
                plugin_version: &version,
                device_id: &self.device,
                now: SystemTime::now(),
                high_water_mark: None,
            };
            verify_plugin_dir(&dir, &self.trust, &ctx)
                .map_err(|e| format!("generation {}: {e}", generation.number))?;
        }
        Ok(())
    }
}

/// Writes `files` under `dir`, creating directories (no panics: after a
/// cut every call fails with EIO).
fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(())
}

/// An installation as the store's API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Installation {
    current: Option<(u64, Model)>,
    previous: Option<(u64, Model)>,
}

impl Installation {
    fn empty() -> Installation {
        Installation {
            current: None,
            previous: None,
        }
    }

    fn of(number: u64, plugins: &Model, previous: Option<(u64, &Model)>) -> Installation {
        Installation {
            current: Some((number, plugins.clone())),
            previous: previous.map(|(n, m)| (n, m.clone())),
        }
    }
}

/// Every path under a root with its type, mode and content.
type Tree = BTreeMap<String, Node>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(PathBuf),
}

/// Reads the whole tree under `root`. `.lock` holds a pid (its bytes are
/// not compared) and `state.json` a creation time (set to 0 here).
fn read_tree(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            let rel = txn_path(
                &path
                    .strip_prefix(root)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy(),
            );
            let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{rel}: {e}"))?;
            let mode = meta.mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Symlink(std::fs::read_link(&path).map_err(|e| format!("{rel}: {e}"))?)
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir(mode)
            } else if rel == xplugin_store::LOCK_FILE {
                Node::File(mode, Vec::new())
            } else {
                let bytes = std::fs::read(&path).map_err(|e| format!("{rel}: {e}"))?;
                let bytes = if rel.ends_with("/state.json") {
                    normalize_state(bytes)
                } else if rel.starts_with("transactions/") && rel.ends_with("/record.json") {
                    normalize_record(bytes)
                } else {
                    bytes
                };
                Node::File(mode, bytes)
            };
            tree.insert(rel, node);
        }
    }
    Ok(tree)
}

/// `state.json` with `created_unix` set to 0 and the transaction that made
/// it named `TXN` (unparsable bytes stay as they are, and will not match).
fn normalize_state(bytes: Vec<u8>) -> Vec<u8> {
    normalize_json(bytes, &["created_unix"], &["transaction"])
}

/// A transaction's `record.json` with its random id and its times fixed.
fn normalize_record(bytes: Vec<u8>) -> Vec<u8> {
    normalize_json(
        bytes,
        &["created_unix", "expires_unix", "decided_unix"],
        &["id"],
    )
}

fn normalize_json(bytes: Vec<u8>, times: &[&str], ids: &[&str]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut value) => {
            for key in times {
                if let Some(t) = value.get_mut(*key) {
                    *t = 0.into();
                }
            }
            for key in ids {
                if let Some(id) = value.get_mut(*key).filter(|v| v.is_string()) {
                    *id = "TXN".into();
                }
            }
            value.to_string().into_bytes()
        }
        Err(_) => bytes,
    }
}

/// Transaction ids are random: `transactions/<ID>` is `transactions/TXN` in
/// trees and boundary names, so that two runs of an operation compare. (The
/// cases hold one transaction per root.)
fn txn_path(path: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').collect();
    for i in 1..parts.len() {
        if parts[i - 1] == TRANSACTIONS_DIR && xplugin_store::transaction::valid_id(parts[i]) {
            parts[i] = "TXN";
        }
    }
    parts.join("/")
}

/// The boundaries a mount saw, with transaction ids as [`txn_path`] writes
/// them.
fn boundaries_of(mount: &Mount) -> Vec<Boundary> {
    mount
        .boundaries()
        .into_iter()
        .map(|b| match b {
            Boundary::Fsync(p) => Boundary::Fsync(txn_path(&p)),
            Boundary::FsyncDir(p) => Boundary::FsyncDir(txn_path(&p)),
            Boundary::Rename(from, to) => Boundary::Rename(txn_path(&from), txn_path(&to)),
            Boundary::Link(p) => Boundary::Link(txn_path(&p)),
            Boundary::Symlink(p) => Boundary::Symlink(txn_path(&p)),
        })
        .collect()
}

/// How a case's trees are compared: exactly, or with an aborted
/// transaction counted as none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Exact,
    /// A prepare cut short is aborted by recovery (or never became
    /// visible): the installation is the old one, the root keeps the
    /// aborted record (nothing else of it) for callers that ask. A record
    /// with anything left beside it still counts, and will not match.
    AbortedIsNone,
}

impl Compare {
    fn apply(self, mut tree: Tree) -> Tree {
        if self == Compare::Exact {
            return tree;
        }
        let aborted: Vec<String> = tree
            .iter()
            .filter_map(|(path, node)| {
                let dir = path.strip_suffix("/record.json")?;
                let Node::File(_, bytes) = node else {
                    return None;
                };
                let record: serde_json::Value = serde_json::from_slice(bytes).ok()?;
                (dir.starts_with("transactions/") && record["state"] == "aborted")
                    .then(|| dir.to_string())
            })
            .collect();
        for dir in aborted {
            let inside = |p: &String| p.starts_with(&format!("{dir}/"));
            if tree.keys().filter(|p| inside(p)).count() == 1 {
                tree.retain(|p, _| *p != dir && !inside(p));
            }
        }
        if !tree.keys().any(|p| p.starts_with("transactions/")) {
            tree.remove(TRANSACTIONS_DIR);
        }
        tree
    }
}

/// The first few differences between two trees, for messages.
fn tree_diff(found: &Tree, expected: &Tree) -> String {
    let mut out = Vec::new();
    for (path, node) in found {
        match expected.get(path) {
            None => out.push(format!("extra {path}")),
            Some(e) if e != node => out.push(format!("differs {path}: {}", describe(node))),
            _ => {}
        }
    }
    for path in expected.keys().filter(|p| !found.contains_key(*p)) {
        out.push(format!("missing {path}"));
    }
    let more = out.len().saturating_sub(6);
    out.truncate(6);
    if more > 0 {
        out.push(format!("... {more} more"));
    }
    out.join("; ")
}

fn describe(node: &Node) -> String {
    match node {
        Node::Dir(mode) => format!("directory {mode:o}"),
        Node::File(mode, bytes) => format!("file {mode:o}, {} bytes", bytes.len()),
        Node::Symlink(target) => format!("symlink to {}", target.display()),
    }
}

/// What a cut left, after recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Old,
    New,
    /// Neither: recovery failed, a license does not verify, or the tree is
    /// a mix or has leftovers.
    Broken(String),
}

/// An operation run against a mounted install root; `Err` describes a
/// failure (expected after a cut).
type Operation<'a> = Box<dyn Fn(&Path) -> Result<(), String> + 'a>;

/// One operation under test.
struct Case<'a> {
    /// Names the boundaries (`NAME#K ...`).
    name: String,
    /// The disk before the operation.
    start: Image,
    /// The operation, run against the mounted install root. After the cut
    /// every call fails; it must not panic then.
    op: Operation<'a>,
    old: Installation,
    new: Installation,
    compare: Compare,
}

/// A mount point and the vendor, shared by the cases of one test.
struct Harness {
    vendor: Vendor,
    _dir: tempfile::TempDir,
    mnt: PathBuf,
    watchdog: Watchdog,
}

/// How long one test may run before its watchdog says where it is stuck and
/// ends the FUSE connection under it (14 to 20 s is usual on the host).
const STUCK_AFTER: Duration = Duration::from_secs(600);

/// Turns a test stuck on its FUSE mount into a failure that says where: a
/// call waiting on the file system forever cannot be interrupted, but ending
/// the connection makes it (and every later one) fail with `ENOTCONN`.
struct Watchdog {
    shared: std::sync::Arc<(std::sync::Mutex<Watched>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Watched {
    /// The cut point or step being run.
    at: String,
    /// The mount in use.
    aborter: Option<Aborter>,
    done: bool,
}

impl Watchdog {
    fn start(test: &str) -> Watchdog {
        let shared = std::sync::Arc::new((
            std::sync::Mutex::new(Watched::default()),
            std::sync::Condvar::new(),
        ));
        let watched = std::sync::Arc::clone(&shared);
        let test = test.to_string();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let (lock, wake) = &*watched;
            let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !w.done {
                let left = STUCK_AFTER.saturating_sub(started.elapsed());
                if left.is_zero() {
                    let aborted = w.aborter.as_ref().is_some_and(|a| a.abort());
                    report(&format!(
                        "{test}: STUCK: still running after {:?}, at {}; {}",
                        started.elapsed(),
                        w.at,
                        if aborted {
                            "ended the FUSE connection, so the waiting call fails"
                        } else {
                            "cannot end the FUSE connection (no fusectl)"
                        }
                    ));
                    w = wake
                        .wait_timeout(w, Duration::from_secs(30))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
                w = wake
                    .wait_timeout(w, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        });
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Watched)) {
        f(&mut self.shared.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.update(|w| w.done = true);
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one run of a case's enumeration found.
struct CaseResult {
    name: String,
    /// Boundaries of the clean run, with the outcome of a cut after each;
    /// the last entry is the cut after the operation returned.
    cuts: Vec<(String, Outcome)>,
    /// The operation does not change the installation (recovery): old and
    /// new are the same tree.
    unchanged: bool,
    elapsed: Duration,
}

impl CaseResult {
    /// Violations: neither old nor new, old after the operation returned,
    /// or old after new.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen_new: Option<&str> = None;
        let last = self.cuts.len().saturating_sub(1);
        for (i, (boundary, outcome)) in self.cuts.iter().enumerate() {
            match outcome {
                Outcome::Broken(why) => out.push(format!("{boundary}: neither old nor new: {why}")),
                Outcome::Old if i == last && !self.unchanged => out.push(format!(
                    "{boundary}: the operation returned success, but a power cut then leaves the old installation"
                )),
                Outcome::Old => {
                    if let Some(first) = seen_new {
                        out.push(format!(
                            "{boundary}: old installation again after {first} left the new one"
                        ));
                    }
                }
                Outcome::New => {
                    seen_new.get_or_insert(boundary);
                }
            }
        }
        out
    }

    fn summary(&self) -> String {
        let count = |o: &Outcome| self.cuts.iter().filter(|(_, x)| x == o).count();
        let broken = self
            .cuts
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Broken(_)))
            .count();
        let switch = self
            .cuts
            .iter()
            .find(|(_, o)| *o == Outcome::New)
            .map_or_else(|| "never".to_string(), |(b, _)| format!("`{b}`"));
        // Only fsyncs change the durable image (powerfs rules 1-3): the number
        // of different images checked.
        let fsyncs = self
            .cuts
            .iter()
            .filter(|(b, _)| b.contains(" fsync"))
            .count();
        let points = format!(
            "{}: {} cut points ({fsyncs} at fsyncs, 1 after return)",
            self.name,
            self.cuts.len()
        );
        if self.unchanged {
            return format!(
                "{points}, same installation {}, neither {broken} ({:.1?})",
                count(&Outcome::Old),
                self.elapsed
            );
        }
        format!(
            "{points}, old {}, new {}, neither {broken}, new from {switch} ({:.1?})",
            count(&Outcome::Old),
            count(&Outcome::New),
            self.elapsed
        )
    }
}

impl Harness {
    fn new(test: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        Harness {
            vendor: Vendor::new(),
            _dir: dir,
            mnt,
            watchdog: Watchdog::start(test),
        }
    }

    fn mount(&self, image: &Image) -> Mount {
        let mount = Mount::new(image, &self.mnt).unwrap_or_else(|e| panic!("mount powerfs: {e}"));
        self.watchdog.update(|w| w.aborter = Some(mount.aborter()));
        mount
    }

    /// Tells the watchdog what runs now.
    fn at(&self, what: &str) {
        self.watchdog.update(|w| w.at = what.to_string());
    }

    /// Runs `f` on a fresh mount of `image` and shuts down cleanly.
    fn build(&self, image: &Image, f: impl FnOnce(&Path)) -> Image {
        let mount = self.mount(image);
        f(mount.path());
        mount.shutdown().unwrap()
    }

    /// Mounts `image`, recovers it and checks it against the two reference
    /// trees.
    fn check(&self, image: &Image, old: &Tree, new: &Tree, compare: Compare) -> Outcome {
        if !image.anomalies().is_empty() {
            return Outcome::Broken(format!("model anomalies: {:?}", image.anomalies()));
        }
        let mount = self.mount(image);
        let outcome = self.check_mounted(mount.path(), old, new, compare);
        mount.unmount().unwrap();
        outcome
    }

    fn check_mounted(&self, root: &Path, old: &Tree, new: &Tree, compare: Compare) -> Outcome {
        let recovered = Store::open(root).and_then(|store| {
            let lock = store.lock()?;
            let problems = lock.recovery().problems.clone();
            drop(lock);
            Ok((store, problems))
        });
        let (store, problems) = match recovered {
            Ok(found) => found,
            Err(e) => return Outcome::Broken(format!("recovery failed: {e}")),
        };
        if !problems.is_empty() {
            return Outcome::Broken(format!("recovery left problems: {problems}"));
        }
        let generations = store
            .current()
            .and_then(|c| Ok((c, store.previous()?)))
            .map_err(|e| e.to_string());
        let licenses = generations.and_then(|(current, previous)| {
            current
                .iter()
                .chain(previous.iter())
                .try_for_each(|g| self.vendor.verify(g))
        });
        if let Err(why) = licenses {
            return Outcome::Broken(format!("license check: {why}"));
        }
        match read_tree(root).map(|t| compare.apply(t)) {
            Ok(tree) if tree == *old => Outcome::Old,
            Ok(tree) if tree == *new => Outcome::New,
            Ok(tree) => Outcome::Broken(format!(
                "vs old: {}; vs new: {}",
                tree_diff(&tree, old),
                tree_diff(&tree, new)
            )),
            Err(e) => Outcome::Broken(format!("cannot read the root: {e}")),
        }
    }

    /// The tree of `image` after recovery with the normal store, checked
    /// against `expected` through the store's API and the licenses.
    fn reference(
        &self,
        image: &Image,
        expected: &Installation,
        compare: Compare,
        what: &str,
    ) -> Tree {
        set_skip_fsync(SkipFsync::default());
        let mount = self.mount(image);
        let root = mount.path();
        let store = Store::open(root).unwrap();
        let lock = store.lock().unwrap();
        drop(lock);
        let current = installed(&store);
        let previous = store.previous().unwrap();
        let found = Installation {
            current: current.as_ref().map(|(g, m)| (g.number, m.clone())),
            previous: previous.as_ref().map(|p| (p.number, read_generation(p))),
        };
        assert_eq!(&found, expected, "{what}");
        for g in current.iter().map(|(g, _)| g).chain(previous.iter()) {
            self.vendor
                .verify(g)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        let tree = compare.apply(read_tree(root).unwrap());
        mount.unmount().unwrap();
        tree
    }

    /// The clean run: the boundaries, and the durable and live images once
    /// the operation returned.
    fn clean_run(&self, case: &Case<'_>) -> (Vec<Boundary>, Image, Image) {
        let mount = self.mount(&case.start);
        if let Err(e) = (case.op)(mount.path()) {
            panic!(
                "{}: the operation failed without a power cut: {e}",
                case.name
            );
        }
        let boundaries = boundaries_of(&mount);
        let durable = mount.power_cut();
        let live = mount.shutdown().unwrap();
        (boundaries, durable, live)
    }

    /// Cuts power after each boundary of `case` in turn, with the store's
    /// fsyncs as `skip` says, and checks every cut.
    fn enumerate(&self, case: &Case<'_>, skip: SkipFsync) -> CaseResult {
        let started = Instant::now();
        self.at(&format!("{}: the clean runs", case.name));
        let old = self.reference(
            &case.start,
            &case.old,
            case.compare,
            &format!("{}: start", case.name),
        );
        let (_, _, live) = self.clean_run(case);
        let new = self.reference(
            &live,
            &case.new,
            case.compare,
            &format!("{}: end", case.name),
        );

        set_skip_fsync(skip);
        let (boundaries, end, _) = self.clean_run(case);
        let names: Vec<String> = boundaries
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{}#{} {b}", case.name, i + 1))
            .collect();
        let mut cuts = Vec::new();
        for (k, name) in names.iter().enumerate().map(|(i, n)| (i + 1, n)) {
            self.at(&format!("the cut after {name}"));
            let mount = self.mount(&case.start);
            mount.cut_after(k);
            let _ = (case.op)(mount.path());
            let cut = mount.take_cut();
            let seen = boundaries_of(&mount);
            mount.unmount().unwrap();
            let cut = cut.unwrap_or_else(|| {
                panic!(
                    "{name}: not reached again ({} boundaries): the operation is not deterministic",
                    seen.len()
                )
            });
            assert_eq!(
                seen.as_slice(),
                &boundaries[..k],
                "{name}: the operation took another path than in the clean run"
            );
            cuts.push((
                name.clone(),
                self.check(&cut.durable, &old, &new, case.compare),
            ));
        }
        let end_name = format!("{}#end (returned)", case.name);
        cuts.push((end_name, self.check(&end, &old, &new, case.compare)));
        set_skip_fsync(SkipFsync::default());
        CaseResult {
            name: case.name.clone(),
            cuts,
            unchanged: old == new,
            elapsed: started.elapsed(),
        }
    }

    /// The live image (as a `kill -9` leaves it) right after the first
    /// boundary of `case` that `pick` selects.
    fn killed_at(&self, case: &Case<'_>, pick: impl Fn(&Boundary) -> bool) -> (String, Image) {
        let (boundaries, _, _) = self.clean_run(case);
        let k = boundaries
            .iter()
            .position(pick)
            .unwrap_or_else(|| panic!("{}: no such boundary in {boundaries:?}", case.name))
            + 1;
        let mount = self.mount(&case.start);
        mount.cut_after(k);
        let _ = (case.op)(mount.path());
        let cut = mount.take_cut().expect("cut");
        mount.unmount().unwrap();
        (format!("{}#{k} {}", case.name, boundaries[k - 1]), cut.live)
    }
}

/// The plugin sets and the images the cases start from.
struct Fixture {
    v1: Model,
    v2: Model,
    v3: Model,
    /// What the transaction installs over v1 (alpha 2.0.0, delta).
    txn_plugins: Model,
    /// v1 with the transaction committed: nothing removed.
    v2t: Model,
    empty: Image,
    at_v1: Image,
    at_v2: Image,
    /// v1 with the transaction prepared.
    prepared: Image,
}

fn model(entries: &[(&str, &PluginModel)]) -> Model {
    entries
        .iter()
        .map(|(n, m)| ((*n).to_string(), (*m).clone()))
        .collect()
}

/// Stages `add` (as an import unpacks) and commits them with `remove`.
fn commit(root: &Path, add: &Model, remove: &[&str]) -> Result<(), String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let lock = store.lock().map_err(|e| e.to_string())?;
    let staging = store.staging(&lock).map_err(|e| e.to_string())?;
    let mut plan = CommitPlan::default();
    for (name, m) in add {
        let dir = staging.plugin_dir(name).map_err(|e| e.to_string())?;
        write_tree(&dir, &m.files).map_err(|e| format!("stage {name}: {e}"))?;
        plan.add_or_replace.push(StagedPlugin {
            name: name.clone(),
            version: m.version.clone(),
            enabled: m.enabled,
            dir,
            values: m.values.clone().map(ValuesFile),
        });
    }
    plan.remove = remove.iter().map(|s| (*s).to_string()).collect();
    store
        .commit(&lock, plan)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn rollback(root: &Path) -> Result<(), String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let lock = store.lock().map_err(|e| e.to_string())?;
    store.rollback(&lock).map(drop).map_err(|e| e.to_string())
}

fn set_enabled(root: &Path, name: &str, enabled: bool) -> Result<(), String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let lock = store.lock().map_err(|e| e.to_string())?;
    store
        .set_enabled(&lock, name, enabled)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Prepares an install transaction of `add` as the controller's install
/// does: the received package and its unpacked tree in the transaction, the
/// plugins moved to `staged/`, their values staged, then `prepared`.
fn prepare(root: &Path, add: &Model) -> Result<(), String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let lock = store.lock().map_err(|e| e.to_string())?;
    let mut txn = store
        .begin_transaction(&lock, "powerloss", DEFAULT_TIMEOUT, false)
        .map_err(|e| e.to_string())?;
    std::fs::write(txn.package_path(), b"PK\x05\x06 the received package")
        .map_err(|e| format!("write package: {e}"))?;
    let mut plugins = Vec::new();
    for (name, m) in add {
        let unpacked = txn.unpack_dir().join(name);
        write_tree(&unpacked, &m.files).map_err(|e| format!("unpack {name}: {e}"))?;
        std::fs::rename(&unpacked, txn.staged_dir().join(name))
            .map_err(|e| format!("stage {name}: {e}"))?;
        store
            .stage_transaction_values(&lock, txn.id(), name, m.values.as_deref())
            .map_err(|e| e.to_string())?;
        plugins.push(TransactionPlugin {
            name: name.clone(),
            version: m.version.clone(),
            enabled: m.enabled,
        });
    }
    store
        .mark_prepared(&lock, &mut txn, plugins)
        .map_err(|e| e.to_string())
}

/// Decides the root's one open transaction: commit or abort.
fn decide(root: &Path, commit: bool) -> Result<(), String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let lock = store.lock().map_err(|e| e.to_string())?;
    let open = store
        .open_transaction()
        .map_err(|e| e.to_string())?
        .ok_or("no open transaction")?;
    match commit {
        true => store.commit_transaction(&lock, &open.id),
        false => store.abort_transaction(&lock, &open.id, "aborted by the test"),
    }
    .map(drop)
    .map_err(|e| e.to_string())
}

/// Takes the lock, which runs recovery.
fn recover(root: &Path) -> Result<(), String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    store.lock().map(drop).map_err(|e| e.to_string())
}

impl Fixture {
    fn new(h: &Harness) -> Fixture {
        let v = &h.vendor;
        let alpha1 = v.plugin("alpha", "1.0.0", true, 9);
        let beta = v.plugin("beta", "1.0.0", true, 8);
        let gamma = v.plugin("gamma", "1.0.0", true, 4);
        let alpha2 = v.plugin("alpha", "2.0.0", true, 9);
        let delta = v.plugin("delta", "0.3.0", false, 6);
        let v1 = model(&[("alpha", &alpha1), ("beta", &beta), ("gamma", &gamma)]);
        let v2 = model(&[("alpha", &alpha2), ("beta", &beta), ("delta", &delta)]);
        let mut v3 = v2.clone();
        if let Some(b) = v3.get_mut("beta") {
            b.enabled = false;
        }
        let empty = Image::empty();
        let at_v1 = h.build(&empty, |root| {
            commit(root, &v1, &[]).unwrap();
            // Plugin data: the store must never touch it.
            let data = Store::open(root).unwrap().data_dir("alpha").unwrap();
            std::fs::write(data.join("calibration.json"), "{\"offset\": 42}").unwrap();
        });
        let txn_plugins = model(&[("alpha", &v2["alpha"]), ("delta", &v2["delta"])]);
        let at_v2 = h.build(&at_v1, |root| {
            commit(root, &txn_plugins, &["gamma"]).unwrap();
        });
        let prepared = h.build(&at_v1, |root| prepare(root, &txn_plugins).unwrap());
        let mut v2t = v1.clone();
        v2t.extend(txn_plugins.clone());
        Fixture {
            v1,
            v2,
            v3,
            txn_plugins,
            v2t,
            empty,
            at_v1,
            at_v2,
            prepared,
        }
    }

    fn installation(&self, which: &str) -> Installation {
        match which {
            "empty" => Installation::empty(),
            "v1" => Installation::of(1, &self.v1, None),
            "v2" => Installation::of(2, &self.v2, Some((1, &self.v1))),
            "v3" => Installation::of(3, &self.v3, Some((2, &self.v2))),
            "v2t" => Installation::of(2, &self.v2t, Some((1, &self.v1))),
            other => panic!("no installation {other}"),
        }
    }

    /// Commit (first install and upgrade), set_enabled (a commit that
    /// prunes), rollback, and the two-phase install: prepare (a cut short
    /// prepare must leave the old installation, and at most its aborted
    /// record), commit and abort of a prepared transaction.
    ///
    /// Another operation is one more entry: its start image (an image above,
    /// or one made with [`Harness::build`], like `prepared`), the closure,
    /// and the installations before and after. Whatever else the operation
    /// leaves on disk (a transaction record) is compared through the trees
    /// of the clean runs; names or contents that differ from run to run are
    /// normalized in [`read_tree`] (transaction ids, `created_unix`, the
    /// record's times) and in [`boundaries_of`]. Kills in
    /// the middle of it become recovery cases in [`Fixture::recoveries`].
    fn operations(&self) -> Vec<Case<'_>> {
        let changed = model(&[("alpha", &self.v2["alpha"]), ("delta", &self.v2["delta"])]);
        vec![
            Case {
                name: "install".into(),
                start: self.empty.clone(),
                op: Box::new(|root| commit(root, &self.v1, &[])),
                old: self.installation("empty"),
                new: self.installation("v1"),
                compare: Compare::Exact,
            },
            Case {
                name: "upgrade".into(),
                start: self.at_v1.clone(),
                op: Box::new(move |root| commit(root, &changed, &["gamma"])),
                old: self.installation("v1"),
                new: self.installation("v2"),
                compare: Compare::Exact,
            },
            Case {
                name: "set-enabled".into(),
                start: self.at_v2.clone(),
                op: Box::new(|root| set_enabled(root, "beta", false)),
                old: self.installation("v2"),
                new: self.installation("v3"),
                compare: Compare::Exact,
            },
            Case {
                name: "rollback".into(),
                start: self.at_v2.clone(),
                op: Box::new(rollback),
                old: self.installation("v2"),
                new: self.installation("v1"),
                compare: Compare::Exact,
            },
            // The two-phase install (controller `install --prepare`, `commit
            // ID`, `abort ID`; the pendant's install over the link).
            Case {
                name: "txn-prepare".into(),
                start: self.at_v1.clone(),
                op: Box::new(|root| prepare(root, &self.txn_plugins)),
                old: self.installation("v1"),
                new: self.installation("v1"),
                compare: Compare::AbortedIsNone,
            },
            Case {
                name: "txn-commit".into(),
                start: self.prepared.clone(),
                op: Box::new(|root| decide(root, true)),
                old: self.installation("v1"),
                new: self.installation("v2t"),
                compare: Compare::Exact,
            },
            Case {
                name: "txn-abort".into(),
                start: self.prepared.clone(),
                op: Box::new(|root| decide(root, false)),
                old: self.installation("v1"),
                new: self.installation("v1"),
                compare: Compare::Exact,
            },
        ]
    }

    /// Recovery, starting from what an operation killed at one of its
    /// boundaries leaves (leftovers of every kind: staging, `N.tmp`, an
    /// uncommitted `N`, `current.tmp`, a rolled-back `N`, `N.trash`).
    fn recoveries(&self, h: &Harness, operations: &[Case<'_>]) -> Vec<Case<'static>> {
        type Pick = fn(&Boundary) -> bool;
        let picks: [(&str, Pick, &str); 8] = [
            (
                "upgrade",
                |b| matches!(b, Boundary::Fsync(p) if p.ends_with("state.json")),
                "v1",
            ),
            (
                "upgrade",
                |b| matches!(b, Boundary::Rename(_, to) if to == "generations/2"),
                "v1",
            ),
            (
                "upgrade",
                |b| matches!(b, Boundary::Symlink(p) if p == "current.tmp"),
                "v1",
            ),
            (
                "upgrade",
                |b| matches!(b, Boundary::Rename(_, to) if to == "current"),
                "v2",
            ),
            (
                "rollback",
                |b| matches!(b, Boundary::Rename(_, to) if to == "current"),
                "v1",
            ),
            (
                "set-enabled",
                |b| matches!(b, Boundary::Rename(_, to) if to.ends_with(".trash")),
                "v3",
            ),
            // Switched, the `committed` record not yet written: recovery
            // sees the generation carry the transaction's id.
            (
                "txn-commit",
                |b| matches!(b, Boundary::Rename(_, to) if to == "current"),
                "v2t",
            ),
            // Killed while preparing: recovery aborts it (its record stays
            // and says so; the old installation is untouched).
            (
                "txn-prepare",
                |b| matches!(b, Boundary::Rename(_, to) if to.starts_with("transactions/TXN/staged/")),
                "v1",
            ),
        ];
        picks
            .iter()
            .enumerate()
            .map(|(i, (op, pick, installed))| {
                let case = operations
                    .iter()
                    .find(|c| c.name == *op)
                    .expect("operation");
                let (at, start) = h.killed_at(case, pick);
                eprintln!("recovery-{}: starts from a kill at {at}", i + 1);
                Case {
                    name: format!("recovery-{}", i + 1),
                    start,
                    op: Box::new(recover),
                    old: self.installation(installed),
                    new: self.installation(installed),
                    compare: Compare::Exact,
                }
            })
            .collect()
    }
}

/// `Some(reason)` when the power-loss tests cannot run here.
fn unavailable(h: &Harness) -> Option<String> {
    if emulated() && std::env::var_os(UNDER_EMULATOR_ENV).is_none() {
        return Some(format!(
            "not run under the emulator (XPLUGIN_TEST_RUNNER is set): power loss is checked \
             on the host; {UNDER_EMULATOR_ENV}=1 runs it here anyway"
        ));
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist (no FUSE in this kernel or container)".into());
    }
    match Mount::new(&Image::empty(), &h.mnt) {
        Ok(mount) => {
            let usable = std::fs::read_dir(mount.path()).map(drop);
            let unmounted = mount.unmount();
            match (usable, unmounted) {
                (Ok(()), Ok(())) => None,
                (Err(e), _) | (_, Err(e)) => Some(format!("a FUSE mount does not work: {e}")),
            }
        }
        Err(e) => Some(format!(
            "cannot mount a FUSE file system ({e}); as root mount(2) is used, otherwise \
             fusermount3 from Debian's fuse3 (scripts/test installs it)"
        )),
    }
}

/// Set to run the power-loss tests under qemu-user all the same.
const UNDER_EMULATOR_ENV: &str = "XPLUGIN_POWERLOSS_UNDER_EMULATOR";

fn emulated() -> bool {
    std::env::var("XPLUGIN_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// The harness, or `None` (after saying why) when FUSE is unavailable.
/// On CI (`CI` set) a missing FUSE fails the test, except under the
/// emulator.
fn harness(test: &str) -> Option<Harness> {
    let h = Harness::new(test);
    let Some(reason) = unavailable(&h) else {
        return Some(h);
    };
    if std::env::var_os("CI").is_some() && !emulated() {
        panic!("{test}: FUSE is needed on CI and is unavailable: {reason}");
    }
    report(&format!("{test}: SKIPPED: {reason}"));
    None
}

/// One line on the real stderr, shown even when the test harness captures
/// output.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn print_cuts(results: &[CaseResult]) {
    for r in results {
        for (boundary, outcome) in &r.cuts {
            eprintln!("{boundary}: {outcome:?}");
        }
    }
}

#[test]
fn powerloss_at_every_boundary_leaves_old_or_new() {
    let started = Instant::now();
    let Some(h) = harness("powerloss_at_every_boundary_leaves_old_or_new") else {
        return;
    };
    let fx = Fixture::new(&h);
    let operations = fx.operations();
    let recoveries = fx.recoveries(&h, &operations);
    let results: Vec<CaseResult> = operations
        .iter()
        .chain(recoveries.iter())
        .map(|case| h.enumerate(case, SkipFsync::default()))
        .collect();
    print_cuts(&results);
    let total: usize = results.iter().map(|r| r.cuts.len()).sum();
    for r in &results {
        report(&format!("powerloss: {}", r.summary()));
    }
    let outcomes = |o: Outcome| {
        results
            .iter()
            .filter(|r| !r.unchanged)
            .flat_map(|r| &r.cuts)
            .filter(|(_, x)| *x == o)
            .count()
    };
    report(&format!(
        "powerloss: {total} cut points over {} operations (old {}, new {} in the changing ones), \
         {:.1?}; `-- --nocapture` lists every cut point",
        results.len(),
        outcomes(Outcome::Old),
        outcomes(Outcome::New),
        started.elapsed()
    ));
    let failures: Vec<String> = results.iter().flat_map(CaseResult::failures).collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 200, "only {total} cut points");
    for r in &results[..operations.len()] {
        assert!(
            r.cuts.iter().any(|(_, o)| *o == Outcome::Old)
                && r.cuts.iter().any(|(_, o)| *o == Outcome::New),
            "{}: the cuts never saw both installations",
            r.name
        );
    }
}

/// Runs every operation with the store's fsyncs as `skip` says and returns
/// the failures found.
fn negative_control(test: &str, skip: SkipFsync) -> Option<(Vec<CaseResult>, Vec<String>)> {
    let h = harness(test)?;
    let fx = Fixture::new(&h);
    let operations = fx.operations();
    let results: Vec<CaseResult> = operations
        .iter()
        .map(|case| h.enumerate(case, skip))
        .collect();
    print_cuts(&results);
    let failures: Vec<String> = results.iter().flat_map(CaseResult::failures).collect();
    for r in &results {
        report(&format!("{test}: {}", r.summary()));
    }
    report(&format!(
        "{test}: {} violations found (expected), e.g. {}",
        failures.len(),
        failures
            .first()
            .and_then(|f| f.lines().next())
            .unwrap_or("none")
    ));
    Some((results, failures))
}

#[test]
fn powerloss_negative_control_without_directory_fsyncs_is_caught() {
    let skip = SkipFsync {
        dirs: true,
        files: false,
    };
    let test = "powerloss_negative_control_without_directory_fsyncs_is_caught";
    let Some((_, failures)) = negative_control(test, skip) else {
        return;
    };
    assert!(
        !failures.is_empty(),
        "the store without directory fsyncs passed every power cut: the harness cannot see the bug"
    );
}

#[test]
fn powerloss_negative_control_without_file_fsyncs_is_caught() {
    let skip = SkipFsync {
        dirs: false,
        files: true,
    };
    let test = "powerloss_negative_control_without_file_fsyncs_is_caught";
    let Some((results, failures)) = negative_control(test, skip) else {
        return;
    };
    // The rename of the new generation survives, its files' data does not:
    // a root that is neither old nor new.
    let neither = results
        .iter()
        .flat_map(|r| &r.cuts)
        .filter(|(_, o)| matches!(o, Outcome::Broken(_)))
        .count();
    assert!(
        neither > 0,
        "the store without file fsyncs never left a broken root: {failures:?}"
    );
}

/// What the watchdog relies on: ending a mount's connection makes a call on
/// it fail at once (`ENOTCONN`) instead of waiting, and the mount still
/// unmounts. Where fusectl is missing (not root) there is nothing to end.
#[test]
fn an_ended_fuse_connection_fails_calls_and_still_unmounts() {
    let Some(h) = harness("an_ended_fuse_connection_fails_calls_and_still_unmounts") else {
        return;
    };
    let mount = h.mount(&Image::empty());
    std::fs::write(mount.path().join("f"), b"x").unwrap();
    if !mount.aborter().abort() {
        report("an_ended_fuse_connection_fails_calls_and_still_unmounts: SKIPPED: no fusectl");
        return;
    }
    let e = std::fs::metadata(mount.path().join("f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::ENOTCONN), "{e}");
    mount.unmount().unwrap();
    assert_eq!(std::fs::read_dir(&h.mnt).unwrap().count(), 0);
}
