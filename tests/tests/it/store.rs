//! The install store (`xplugin_store`): commit, replace, remove, hard
//! links, fixed modes, rollback with enabled state, set_enabled, the lock and
//! its busy message, recovery of leftovers, `current` never dangling.
//! Helpers here are shared with the crash test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use xplugin_model::ProblemCode;

use xplugin_store::{
    CommitPlan, Generation, StagedPlugin, Store, StoreError, StoreLock, DATA_DIR_MODE,
};

/// Expected (or found) content of one installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginModel {
    pub version: String,
    pub enabled: bool,
    /// Relative path -> bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The configuration values file the generation stores for it
    /// (`state/config/<N>/<NAME>.json`), if any.
    pub values: Option<Vec<u8>>,
}

/// A whole installed set by plugin name.
pub(crate) type Model = BTreeMap<String, PluginModel>;

/// A plugin model from (path, content) pairs.
pub(crate) fn plugin(version: &str, enabled: bool, files: &[(&str, &str)]) -> PluginModel {
    PluginModel {
        version: version.into(),
        enabled,
        files: files
            .iter()
            .map(|(p, c)| ((*p).to_string(), c.as_bytes().to_vec()))
            .collect(),
        values: None,
    }
}

/// Writes a plugin's files under `dir` (created as needed).
pub(crate) fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
    }
}

/// Stages `model` as plugin `name` in `staging` and returns the plan entry.
fn stage(staging: &xplugin_store::StagingDir<'_>, name: &str, model: &PluginModel) -> StagedPlugin {
    let dir = staging.plugin_dir(name).unwrap();
    write_files(&dir, &model.files);
    StagedPlugin {
        name: name.into(),
        version: model.version.clone(),
        enabled: model.enabled,
        dir,
        values: None,
    }
}

/// Commits `add` and `remove` in one plan.
fn commit(
    store: &Store,
    lock: &StoreLock,
    add: &[(&str, &PluginModel)],
    remove: &[&str],
) -> Result<Generation, StoreError> {
    let staging = store.staging(lock).unwrap();
    let plan = CommitPlan {
        add_or_replace: add
            .iter()
            .map(|(name, m)| stage(&staging, name, m))
            .collect(),
        remove: remove.iter().map(|s| (*s).to_string()).collect(),
    };
    store.commit(lock, plan)
}

/// Reads every file of a generation's plugins and checks the fixed modes
/// (files 0644, directories 0755, nothing else).
/// The values file generation `generation` stores for plugin `name`.
fn read_values(generation: &Generation, name: &str) -> Option<Vec<u8>> {
    let root = generation.dir.parent()?.parent()?;
    let path = root
        .join("state/config")
        .join(generation.number.to_string())
        .join(format!("{name}.json"));
    std::fs::read(path).ok()
}

pub(crate) fn read_generation(generation: &Generation) -> Model {
    let mut model = Model::new();
    for p in generation.plugins() {
        let dir = generation.plugin_dir(&p.name).unwrap();
        let mut files = BTreeMap::new();
        read_tree(&dir, &dir, &mut files);
        model.insert(
            p.name.clone(),
            PluginModel {
                version: p.version,
                enabled: p.enabled,
                files,
                values: read_values(generation, &p.name),
            },
        );
    }
    // No plugin directory without a state entry.
    let on_disk: Vec<String> = std::fs::read_dir(generation.dir.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut on_disk = on_disk;
    on_disk.sort();
    assert_eq!(
        on_disk,
        model.keys().cloned().collect::<Vec<_>>(),
        "plugin dirs of {}",
        generation.dir.display()
    );
    model
}

fn read_tree(top: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o755,
        "mode of directory {}",
        dir.display()
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            read_tree(top, &path, files);
        } else {
            assert!(meta.is_file(), "{} is not a regular file", path.display());
            assert_eq!(
                meta.mode() & 0o7777,
                0o644,
                "mode of file {}",
                path.display()
            );
            let rel = path
                .strip_prefix(top)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            files.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// The current generation and its contents; asserts that `current` does not
/// dangle.
pub(crate) fn installed(store: &Store) -> Option<(Generation, Model)> {
    let link = store.root().join("current");
    if let Ok(target) = std::fs::read_link(&link) {
        assert!(
            store.root().join(&target).join("state.json").is_file(),
            "current -> {} dangles",
            target.display()
        );
    }
    store.current().unwrap().map(|g| {
        let m = read_generation(&g);
        (g, m)
    })
}

/// No leftovers: staging empty, no `current.tmp`, and `generations/` holds
/// exactly the current generation and (if recorded) its previous.
pub(crate) fn assert_clean(store: &Store) {
    let root = store.root();
    let staging: Vec<_> = std::fs::read_dir(root.join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "staging not empty: {staging:?}");
    assert!(
        std::fs::symlink_metadata(root.join("current.tmp")).is_err(),
        "current.tmp left over"
    );
    let mut names: Vec<String> = std::fs::read_dir(root.join("generations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = Vec::new();
    if let Some(current) = store.current().unwrap() {
        expected.push(current.number.to_string());
        if let Some(previous) = current.state.previous {
            if root.join("generations").join(previous.to_string()).exists() {
                expected.push(previous.to_string());
            }
        }
    }
    expected.sort();
    assert_eq!(names, expected, "generations/ in {}", root.display());
}

fn model(entries: &[(&str, &PluginModel)]) -> Model {
    entries
        .iter()
        .map(|(n, m)| ((*n).to_string(), (*m).clone()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The driver binary, with `XPLUGIN_TEST_RUNNER` (e.g. qemu) in front if set.
pub(crate) fn driver() -> Command {
    let exe = env!("CARGO_BIN_EXE_store-driver");
    match std::env::var("XPLUGIN_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words).arg(exe);
            cmd
        }
        _ => Command::new(exe),
    }
}

#[test]
fn fresh_root_is_an_empty_installation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = Store::open(&root).unwrap();
    for dir in ["generations", "staging", "data", "state"] {
        assert!(root.join(dir).is_dir(), "{dir} missing");
    }
    assert!(store.current().unwrap().is_none());
    let lock = store.lock().unwrap();
    assert!(lock.recovery().is_empty());
    let err = store.rollback(&lock).unwrap_err();
    assert!(
        matches!(err, StoreError::NoPreviousGeneration { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nothing is installed"), "{err}");
    assert_clean(&store);
}

#[test]
fn commit_replace_remove_and_carry_over_by_hard_link() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock().unwrap();
    let a1 = plugin(
        "1.0.0",
        true,
        &[("liba.so", "a one"), ("res/a.qml", "qml a1")],
    );
    let b1 = plugin(
        "1.0.0",
        false,
        &[("libb.so", "b one"), ("deep/er/x.txt", "x")],
    );
    let c1 = plugin("1.0.0", true, &[("libc.so", "c one")]);
    let g1 = commit(&store, &lock, &[("a", &a1), ("b", &b1), ("c", &c1)], &[]).unwrap();
    assert_eq!(g1.number, 1);
    assert_eq!(g1.state.previous, None);
    let (cur, m) = installed(&store).unwrap();
    assert_eq!(cur, g1);
    assert_eq!(m, model(&[("a", &a1), ("b", &b1), ("c", &c1)]));
    assert_clean(&store);

    // Replace a (different file set), remove c, add d; b is carried over.
    let a2 = plugin(
        "2.0.0",
        true,
        &[("liba.so", "a two"), ("res/new.qml", "qml a2")],
    );
    let d1 = plugin("0.1.0", false, &[("libd.so", "d")]);
    let g2 = commit(&store, &lock, &[("a", &a2), ("d", &d1)], &["c"]).unwrap();
    assert_eq!((g2.number, g2.state.previous), (2, Some(1)));
    let (_, m) = installed(&store).unwrap();
    assert_eq!(m, model(&[("a", &a2), ("b", &b1), ("d", &d1)]));
    // b's files are the very same inodes as in generation 1.
    for rel in ["libb.so", "deep/er/x.txt"] {
        let old = std::fs::metadata(g1.plugin_dir("b").unwrap().join(rel)).unwrap();
        let new = std::fs::metadata(g2.plugin_dir("b").unwrap().join(rel)).unwrap();
        assert_eq!(
            (old.dev(), old.ino()),
            (new.dev(), new.ino()),
            "{rel} not hard-linked"
        );
    }
    // Generation 1 is kept for rollback, unchanged.
    assert_eq!(
        read_generation(&store.previous().unwrap().unwrap()),
        model(&[("a", &a1), ("b", &b1), ("c", &c1)])
    );
    assert_clean(&store);

    // A third commit drops generation 1 (only current and previous are kept).
    let b2 = plugin("1.1.0", true, &[("libb.so", "b two")]);
    let g3 = commit(&store, &lock, &[("b", &b2)], &[]).unwrap();
    assert_eq!((g3.number, g3.state.previous), (3, Some(2)));
    assert!(!store.root().join("generations/1").exists());
    assert_eq!(
        installed(&store).unwrap().1,
        model(&[("a", &a2), ("b", &b2), ("d", &d1)])
    );
    assert_clean(&store);
}

#[test]
fn installed_modes_are_fixed_whatever_staging_says() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock().unwrap();
    let staging = store.staging(&lock).unwrap();
    let p = plugin(
        "1.0.0",
        true,
        &[("lib.so", "x"), ("bin/tool", "y"), ("secret/key", "z")],
    );
    let staged = stage(&staging, "p", &p);
    std::fs::set_permissions(
        staged.dir.join("lib.so"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(
        staged.dir.join("bin/tool"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(
        staged.dir.join("secret/key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        staged.dir.join("secret"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(
        staged.dir.join("bin"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let g = store
        .commit(
            &lock,
            CommitPlan {
                add_or_replace: vec![staged],
                remove: vec![],
            },
        )
        .unwrap();
    // read_generation asserts 0644 for every file and 0755 for every directory.
    assert_eq!(read_generation(&g), model(&[("p", &p)]));
    assert_eq!(mode(&g.dir.join("state.json")), 0o644);
    assert_eq!(mode(&g.dir), 0o755);
}

#[test]
fn set_enabled_and_rollback_restore_enabled_state() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock().unwrap();
    let a = plugin("1.0.0", true, &[("liba.so", "a")]);
    let b = plugin("1.0.0", false, &[("libb.so", "b")]);
    commit(&store, &lock, &[("a", &a), ("b", &b)], &[]).unwrap();

    // Same value: nothing written.
    assert_eq!(store.set_enabled(&lock, "a", true).unwrap().number, 1);
    let g2 = store.set_enabled(&lock, "a", false).unwrap();
    assert_eq!((g2.number, g2.state.previous), (2, Some(1)));
    let mut a_off = a.clone();
    a_off.enabled = false;
    assert_eq!(
        installed(&store).unwrap().1,
        model(&[("a", &a_off), ("b", &b)])
    );
    let g3 = store.set_enabled(&lock, "b", true).unwrap();
    assert_eq!(g3.number, 3);
    let mut b_on = b.clone();
    b_on.enabled = true;
    assert_eq!(
        installed(&store).unwrap().1,
        model(&[("a", &a_off), ("b", &b_on)])
    );

    // Rollback restores generation 2 exactly (a disabled, b disabled) and
    // removes generation 3.
    let back = store.rollback(&lock).unwrap();
    assert_eq!(back.number, 2);
    assert_eq!(
        installed(&store).unwrap().1,
        model(&[("a", &a_off), ("b", &b)])
    );
    assert!(!store.root().join("generations/3").exists());
    assert_clean(&store);

    // Only one step back is kept.
    let err = store.rollback(&lock).unwrap_err();
    assert!(
        matches!(err, StoreError::NoPreviousGeneration { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("generation 1 (before generation 2) was already removed"),
        "{err}"
    );

    let err = store.set_enabled(&lock, "nope", true).unwrap_err();
    assert!(matches!(err, StoreError::NotInstalled { .. }), "{err}");
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[test]
fn rollback_after_upgrade_restores_old_files_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock().unwrap();
    let a1 = plugin(
        "1.0.0",
        false,
        &[("liba.so", "a1"), ("old.txt", "only in 1")],
    );
    let a2 = plugin(
        "2.0.0",
        true,
        &[("liba.so", "a2"), ("new.txt", "only in 2")],
    );
    commit(&store, &lock, &[("a", &a1)], &[]).unwrap();
    commit(&store, &lock, &[("a", &a2)], &[]).unwrap();
    assert_eq!(installed(&store).unwrap().1, model(&[("a", &a2)]));
    let g = store.rollback(&lock).unwrap();
    assert_eq!(g.number, 1);
    assert_eq!(installed(&store).unwrap().1, model(&[("a", &a1)]));
    assert_clean(&store);
    // The next commit gets the next free number again.
    let g = commit(&store, &lock, &[("a", &a2)], &[]).unwrap();
    assert_eq!((g.number, g.state.previous), (2, Some(1)));
}

#[test]
fn invalid_plan_lists_every_problem_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("root")).unwrap();
    let lock = store.lock().unwrap();
    let a = plugin("1.0.0", true, &[("liba.so", "a")]);
    commit(&store, &lock, &[("a", &a)], &[]).unwrap();
    let before = installed(&store).unwrap();

    let staging = store.staging(&lock).unwrap();
    let mut evil = stage(&staging, "evil", &plugin("1.0.0", true, &[("lib.so", "x")]));
    std::os::unix::fs::symlink("/etc/passwd", evil.dir.join("passwd")).unwrap();
    nix::unistd::mkfifo(
        &evil.dir.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dup = evil.clone();
    evil.version = String::new();
    let plan = CommitPlan {
        add_or_replace: vec![
            evil,
            dup,
            StagedPlugin {
                name: "../x".into(),
                version: "1".into(),
                enabled: true,
                dir: staging.plugin_dir("ok").unwrap(),
                values: None,
            },
            StagedPlugin {
                name: "out".into(),
                version: "1".into(),
                enabled: true,
                dir: outside,
                values: None,
            },
        ],
        remove: vec!["not-installed".into()],
    };
    let err = store.commit(&lock, plan).unwrap_err();
    let StoreError::InvalidPlan { problems } = &err else {
        panic!("expected InvalidPlan, got {err}");
    };
    let text = err.to_string();
    for needle in [
        "evil\": passwd",
        "symbolic link",
        "evil\": pipe",
        "FIFO",
        "installs this name twice",
        "version is empty",
        "\"../x\"",
        "expected inside the staging area",
        "\"not-installed\"",
        "not installed",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
    assert!(problems.len() >= 8, "{text}");
    let codes: Vec<ProblemCode> = problems.0.iter().map(|p| p.code).collect();
    for code in [
        ProblemCode::StoreStagedSpecialFile,
        ProblemCode::StorePlanInvalid,
        ProblemCode::StoreInvalidPluginName,
        ProblemCode::StoreStagedOutside,
        ProblemCode::StoreNotInstalled,
    ] {
        assert!(codes.contains(&code), "no {code}:\n{text}");
    }
    assert_eq!(installed(&store).unwrap(), before);
    drop(staging);
    assert_clean(&store);

    let empty = store.commit(&lock, CommitPlan::default()).unwrap_err();
    assert_eq!(empty.code(), ProblemCode::StorePlanInvalid, "{empty}");
    assert!(empty.to_string().contains("changes nothing"), "{empty}");
}

#[test]
fn staging_dir_is_removed_on_drop_and_needs_this_roots_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("one")).unwrap();
    let other = Store::open(&tmp.path().join("two")).unwrap();
    let lock = store.lock().unwrap();
    let staging = store.staging(&lock).unwrap();
    let path = staging.path().to_path_buf();
    assert!(path.starts_with(store.root().join("staging")));
    std::fs::write(staging.plugin_dir("p").unwrap().join("f"), "x").unwrap();
    drop(staging);
    assert!(!path.exists());
    let err = other.staging(&lock).unwrap_err();
    assert!(matches!(err, StoreError::WrongLock { .. }), "{err}");
    let err = other.rollback(&lock).unwrap_err();
    assert!(matches!(err, StoreError::WrongLock { .. }), "{err}");
}

#[test]
fn data_dir_is_private_and_survives_remove_and_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock().unwrap();
    let a = plugin("1.0.0", true, &[("liba.so", "a")]);
    commit(&store, &lock, &[("a", &a)], &[]).unwrap();
    let data = store.data_dir("a").unwrap();
    assert_eq!(data, store.root().join("data/a"));
    assert_eq!(mode(&data), DATA_DIR_MODE);
    std::fs::write(data.join("calibration.json"), "{}").unwrap();
    commit(&store, &lock, &[], &["a"]).unwrap();
    store.rollback(&lock).unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("calibration.json")).unwrap(),
        "{}"
    );
    assert_eq!(store.data_dir("a").unwrap(), data);
    let err = store.data_dir("../etc").unwrap_err();
    assert!(matches!(err, StoreError::InvalidPluginName { .. }), "{err}");
}

/// Starts `store-driver ROOT hold-lock` and waits until it holds the lock;
/// returns the child and the pid it reported.
pub(crate) fn hold_lock(root: &Path) -> (Child, u32) {
    let mut child = driver()
        .arg(root)
        .arg("hold-lock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line
        .trim()
        .strip_prefix("locked ")
        .unwrap_or_else(|| panic!("driver said {line:?}"))
        .parse()
        .unwrap();
    (child, pid)
}

#[test]
fn second_locker_is_told_who_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (mut child, pid) = hold_lock(store.root());
    let err = store.lock().unwrap_err();
    assert!(
        matches!(err, StoreError::Busy { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    // The message says who; the hint (printed on its own line) what to do.
    assert_eq!(
        err.to_string(),
        format!(
            "another import is running (pid {pid}) on {}",
            store.root().display()
        )
    );
    assert_eq!(err.hint(), "wait for it to finish, then retry");
    assert_eq!(err.code(), ProblemCode::StoreBusy);
    let err = store.lock_wait(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err}");

    // A boot waiting for the lock gets it once the import finishes.
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || store.lock_wait(Duration::from_secs(30)).map(|_| ()))
    };
    std::thread::sleep(Duration::from_millis(100));
    child.stdin.take().unwrap().write_all(b"").unwrap();
    assert!(child.wait().unwrap().success());
    waiter.join().unwrap().unwrap();
    store.lock().unwrap();
}

#[test]
fn killed_lock_holder_leaves_root_unlocked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (mut child, _) = hold_lock(store.root());
    assert!(store.lock().is_err());
    child.kill().unwrap();
    child.wait().unwrap();
    store.lock().unwrap();
}

#[test]
fn recovery_removes_leftovers_and_keeps_current() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let a1 = plugin("1.0.0", true, &[("liba.so", "a1")]);
    let a2 = plugin("2.0.0", true, &[("liba.so", "a2")]);
    {
        let lock = store.lock().unwrap();
        commit(&store, &lock, &[("a", &a1)], &[]).unwrap();
        commit(&store, &lock, &[("a", &a2)], &[]).unwrap();
    }
    let before = installed(&store).unwrap();
    let root = store.root().to_path_buf();
    // Leftovers of every kind an interrupted operation can leave.
    let junk_dir = root.join("staging/1234-5-6/p/locked");
    std::fs::create_dir_all(&junk_dir).unwrap();
    std::fs::write(junk_dir.join("f"), "x").unwrap();
    std::fs::set_permissions(&junk_dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    std::fs::create_dir_all(root.join("generations/3.tmp/plugins/a")).unwrap();
    std::fs::create_dir_all(root.join("generations/0.trash/plugins")).unwrap();
    std::os::unix::fs::symlink("generations/3", root.join("current.tmp")).unwrap();
    // An unreferenced complete generation (renamed into place, never switched to).
    copy_dir(&root.join("generations/2"), &root.join("generations/4"));
    let state = std::fs::read_to_string(root.join("generations/4/state.json")).unwrap();
    std::fs::write(
        root.join("generations/4/state.json"),
        state.replace("\"generation\": 2", "\"generation\": 4"),
    )
    .unwrap();
    // A name the store never creates is left alone.
    std::fs::write(root.join("generations/README"), "not ours").unwrap();

    let lock = store.lock().unwrap();
    let report = lock.recovery();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let mut removed: Vec<String> = report
        .removed
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            "current.tmp",
            "generations/0.trash",
            "generations/3.tmp",
            "generations/4.trash",
            "staging/1234-5-6"
        ]
    );
    std::fs::remove_file(root.join("generations/README")).unwrap();
    assert_clean(&store);
    assert_eq!(installed(&store).unwrap(), before);
}

#[test]
fn broken_current_is_reported_and_nothing_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    {
        let lock = store.lock().unwrap();
        commit(
            &store,
            &lock,
            &[("a", &plugin("1.0.0", true, &[("f", "1")]))],
            &[],
        )
        .unwrap();
    }
    let root = store.root().to_path_buf();
    std::fs::remove_file(root.join("current")).unwrap();
    std::os::unix::fs::symlink("generations/9", root.join("current")).unwrap();
    let err = store.lock().unwrap_err();
    assert!(matches!(err, StoreError::Inconsistent { .. }), "{err}");
    assert!(err.to_string().contains("generations/9 to exist"), "{err}");
    assert!(
        root.join("generations/1/state.json").is_file(),
        "recovery removed a generation"
    );

    std::fs::remove_file(root.join("current")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("current")).unwrap();
    let err = store.current().unwrap_err();
    assert!(err.to_string().contains("a symlink to /etc"), "{err}");
}

/// Copies a tree of directories, regular files and symlinks.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        let t = entry.file_type().unwrap();
        if t.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn root_may_be_a_symlink_and_one_process_holds_one_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("data-partition");
    std::fs::create_dir(&real).unwrap();
    let link = tmp.path().join("root");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = Store::open(&link).unwrap();
    assert_eq!(store.root(), real.canonicalize().unwrap());
    let lock = store.lock().unwrap();
    commit(
        &store,
        &lock,
        &[("a", &plugin("1.0.0", true, &[("f", "x")]))],
        &[],
    )
    .unwrap();
    let err = Store::open(&link).unwrap().lock().unwrap_err();
    assert!(
        matches!(err, StoreError::Busy { pid: Some(p), .. } if p == std::process::id()),
        "{err:?}"
    );
    drop(lock);
    assert_eq!(store.current().unwrap().unwrap().number, 1);
    Store::open(&link).unwrap().lock().unwrap();
}
