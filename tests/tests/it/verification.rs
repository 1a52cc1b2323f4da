//! Boot-time verification with the digest record (docs/verification.md): a
//! library rewritten through the file system after install is refused
//! before it loads, even with its mtime put back; bytes changed below the
//! file system (an ext4 image on a loop device, written at the file's
//! blocks) are caught by the background pass, which quarantines the plugin
//! for the next boot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use xplugin_tests::daemon::Daemon;
use xplugin_tests::scenario::{Run, Scenario};

fn state_of(run: &Run, name: &str) -> String {
    xplugin_tests::daemon::plugin_states(&run.json())
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// True when the run reports `license.file_hash_mismatch` on a subject
/// naming `plugin`.
fn hash_mismatch_of(run: &Run, plugin: &str) -> bool {
    xplugin_tests::problems::problems_with(&run.json(), "license.file_hash_mismatch")
        .iter()
        .any(|p| p["subject"].as_str().unwrap_or("").contains(plugin))
}

/// The installed library `file` under `root` (not in staging or a
/// transaction).
fn installed(root: &Path, file: &str) -> PathBuf {
    fn walk(dir: &Path, file: &str, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, file, out);
            } else if p.file_name().is_some_and(|n| n == file) && !p.is_symlink() {
                out.push(p);
            }
        }
    }
    let mut found = Vec::new();
    walk(root, file, &mut found);
    assert_eq!(
        found.len(),
        1,
        "one installed {file} under {}: {found:?}",
        root.display()
    );
    found.remove(0)
}

fn imported() -> Scenario {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("verify"), &[]).ok();
    s
}

#[test]
fn a_library_rewritten_through_the_file_system_is_refused_before_it_loads() {
    let s = imported();
    let first = s.boot();
    assert_eq!(state_of(&first, "motionlog"), "stopped", "{}", first.all());
    assert!(
        s.controller_root.join("state/digests").is_file(),
        "the first boot records the digests it verified"
    );
    let again = s.boot();
    assert_eq!(state_of(&again, "motionlog"), "stopped", "{}", again.all());

    // Rewrite the library in place (same length), put the mtime back.
    let lib = installed(&s.controller_root, "motionlog.so");
    let mtime = std::fs::metadata(&lib).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&lib).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&lib, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&lib).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);

    let run = s.boot();
    assert_eq!(state_of(&run, "motionlog"), "blocked", "{}", run.all());
    assert!(hash_mismatch_of(&run, "motionlog"), "{}", run.all());
    assert_eq!(state_of(&run, "plugindemo"), "stopped", "{}", run.all());
}

/// True when the run reports a problem `code` whose subject or message
/// names `what`.
fn problem_of(run: &Run, code: &str, what: &str) -> bool {
    xplugin_tests::problems::problems_with(&run.json(), code)
        .iter()
        .any(|p| {
            p["subject"].as_str().unwrap_or("").contains(what)
                || p["message"].as_str().unwrap_or("").contains(what)
        })
}

/// A boot with debug logging, whose log says how many plugin folders were
/// checked from their verdicts.
fn boot_logged(s: &Scenario, extra: &[&str]) -> Run {
    let mut args = vec!["-vv", "boot", "--controller-version", "2.1.0", "--json"];
    args.extend_from_slice(extra);
    s.controller(&args)
}

/// How many plugin folders `run` (a [`boot_logged`]) checked from their
/// verdicts.
fn verdicts_reused(run: &Run) -> Option<u64> {
    run.stderr
        .lines()
        .find_map(|l| l.split("verify: ").nth(1)?.split(' ').next()?.parse().ok())
}

/// Folder verdicts (docs/verification.md): a boot that finds a plugin
/// folder unchanged reuses what its last full check found, and anything the
/// verdict rests on that changes sends the folder to the full check, which
/// refuses what it must. Each change below would let a plugin load that
/// must not, were the verdict reused.
#[test]
fn a_folder_verdict_is_reused_only_while_nothing_it_rests_on_changed() {
    let s = imported();
    let first = boot_logged(&s, &[]);
    assert_eq!(state_of(&first, "motionlog"), "stopped", "{}", first.all());
    let again = boot_logged(&s, &[]);
    assert_eq!(state_of(&again, "motionlog"), "stopped", "{}", again.all());
    assert_eq!(
        verdicts_reused(&again),
        Some(2),
        "both folders from their verdicts: {}",
        again.all()
    );

    let lib = installed(&s.controller_root, "motionlog.so");
    let dir = lib.parent().unwrap().to_path_buf();
    let clean_boot = |what: &str| {
        let run = boot_logged(&s, &[]);
        assert_eq!(
            state_of(&run, "motionlog"),
            "stopped",
            "{what}: {}",
            run.all()
        );
        run
    };

    // Unlicensed code added to the folder.
    std::fs::copy(&lib, dir.join("helper.so")).unwrap();
    let run = boot_logged(&s, &[]);
    assert_eq!(state_of(&run, "motionlog"), "blocked", "{}", run.all());
    assert!(
        problem_of(&run, "license.file_not_covered", "helper.so"),
        "{}",
        run.all()
    );
    assert_eq!(
        verdicts_reused(&run),
        Some(1),
        "plugindemo's only: {}",
        run.all()
    );
    std::fs::remove_file(dir.join("helper.so")).unwrap();
    clean_boot("helper.so removed");

    // Unlicensed code added in a sub-folder the verdict knew: only that
    // folder's keys change, not the plugin folder's.
    std::fs::create_dir(dir.join("assets")).unwrap();
    std::fs::write(dir.join("assets/readme.txt"), "operator notes\n").unwrap();
    clean_boot("assets/ added");
    let run = clean_boot("assets/ known");
    assert_eq!(verdicts_reused(&run), Some(2), "{}", run.all());
    std::fs::copy(&lib, dir.join("assets/extra.so")).unwrap();
    let run = boot_logged(&s, &[]);
    assert_eq!(state_of(&run, "motionlog"), "blocked", "{}", run.all());
    assert!(
        problem_of(&run, "license.file_not_covered", "extra.so"),
        "{}",
        run.all()
    );
    std::fs::remove_file(dir.join("assets/extra.so")).unwrap();
    clean_boot("assets/extra.so removed");
    clean_boot("verdict kept again");

    // Another key trusted under the vendor's key id: the signatures no
    // longer verify.
    let trusted = s.trust.join("demo.pub");
    let vendor_key = std::fs::read(&trusted).unwrap();
    let other = s.tmp.path().join("other-key");
    xplugin_tests::scenario::run_program(
        "xplugin-pack",
        &[
            "keygen",
            "--out",
            other.to_str().unwrap(),
            "--key-id",
            "demo",
        ],
    )
    .ok();
    std::fs::copy(other.join("demo.pub"), &trusted).unwrap();
    let run = boot_logged(&s, &[]);
    assert_eq!(state_of(&run, "motionlog"), "blocked", "{}", run.all());
    assert!(
        problem_of(&run, "license.bad_signature", "motionlog"),
        "{}",
        run.all()
    );
    assert_eq!(verdicts_reused(&run), Some(0), "{}", run.all());
    std::fs::write(&trusted, &vendor_key).unwrap();
    clean_boot("vendor key trusted again");

    // Another device: the licenses are bound to this one.
    let machine_id = std::fs::read(&s.machine_id).unwrap();
    std::fs::write(&s.machine_id, "fedcba9876543210fedcba9876543210\n").unwrap();
    let run = boot_logged(&s, &[]);
    assert_eq!(state_of(&run, "motionlog"), "blocked", "{}", run.all());
    assert!(
        problem_of(&run, "license.device_mismatch", "motionlog"),
        "{}",
        run.all()
    );
    std::fs::write(&s.machine_id, &machine_id).unwrap();
    clean_boot("this device again");

    // `--verify full` checks every folder in full.
    let run = boot_logged(&s, &["--verify", "full"]);
    assert_eq!(state_of(&run, "motionlog"), "stopped", "{}", run.all());
    assert_eq!(verdicts_reused(&run), Some(0), "{}", run.all());
}

/// An ext4 image on a loop device, mounted at `at`; unmounted on drop.
struct LoopMount {
    at: PathBuf,
    image: PathBuf,
}

impl LoopMount {
    /// `None` when this machine cannot loop-mount (not root, no loop
    /// devices): the caller says so and skips.
    fn new(image: PathBuf, at: &Path) -> Option<LoopMount> {
        if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            return None;
        }
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .arg(&image)
            .status()
            .expect("mkfs.ext4 (e2fsprogs) runs");
        assert!(mkfs.success(), "mkfs.ext4 failed");
        std::fs::create_dir_all(at).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(at)
            .status()
            .expect("mount runs");
        if !mount.success() {
            // A container may hide loop devices from root: say so loudly.
            eprintln!("mount -o loop failed although /dev/loop-control exists");
            return None;
        }
        Some(LoopMount {
            at: at.to_path_buf(),
            image,
        })
    }

    /// Flips one byte of `file` (on the mounted file system) at `offset`,
    /// by writing to the image at the file's physical block (from FIEMAP,
    /// `filefrag -v`), behind the mounted file system's back.
    fn corrupt(&self, file: &Path, offset: u64) {
        use std::os::unix::fs::FileExt;
        let out = Command::new("filefrag")
            .args(["-v", "-b4096"])
            .arg(file)
            .output()
            .expect("filefrag (e2fsprogs) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let block = offset / 4096;
        // " ext: logical_offset: physical_offset: length: ..." rows:
        // "   0:        0..     511:      34816..     35327:    512: ..."
        let physical = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(':').map(str::trim);
                parts.next()?.parse::<u64>().ok()?;
                let (lstart, lend) = parts.next()?.split_once("..")?;
                let (pstart, _) = parts.next()?.split_once("..")?;
                let lstart = lstart.trim().parse::<u64>().ok()?;
                let lend = lend.trim().parse::<u64>().ok()?;
                let pstart = pstart.trim().parse::<u64>().ok()?;
                (lstart..=lend)
                    .contains(&block)
                    .then(|| pstart + (block - lstart))
            })
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "no extent of {} holds block {block}:\n{text}",
                    file.display()
                )
            });
        let at = physical * 4096 + offset % 4096;
        let image = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&self.image)
            .unwrap();
        let mut byte = [0u8; 1];
        image.read_exact_at(&mut byte, at).unwrap();
        let expected = std::fs::read(file).unwrap()[offset as usize];
        assert_eq!(byte[0], expected, "the image holds the file's byte at {at}");
        image.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
        image.sync_all().unwrap();
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

#[test]
fn bytes_changed_below_the_file_system_are_caught_by_the_background_pass() {
    let s = Scenario::new();
    let Some(mount) = LoopMount::new(s.tmp.path().join("controller.ext4"), &s.controller_root)
    else {
        eprintln!("SKIPPED: loop-mounting an ext4 image needs root and /dev/loop-control");
        return;
    };
    s.license_all();
    s.import(&s.pack("verify"), &[]).ok();
    // The first boot hashes every file and records the digests.
    let first = s.boot();
    assert_eq!(state_of(&first, "motionlog"), "stopped", "{}", first.all());

    let lib = installed(&s.controller_root, "motionlog.so");
    let before = std::fs::metadata(&lib).unwrap();
    mount.corrupt(&lib, before.len() / 2);
    let after = std::fs::metadata(&lib).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (
            before.ctime(),
            before.ctime_nsec(),
            before.mtime_nsec(),
            before.ino()
        ),
        (
            after.ctime(),
            after.ctime_nsec(),
            after.mtime_nsec(),
            after.ino()
        ),
        "nothing the file system knows changed"
    );

    // The next start answers from the record (the file looks unchanged),
    // then the background pass reads the media and finds the change.
    let d = Daemon::start_with(&s, &s.controller_config, &[]);
    let quarantine = s.controller_root.join("state/quarantine.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut found = String::new();
    while std::time::Instant::now() < deadline {
        found = std::fs::read_to_string(&quarantine).unwrap_or_default();
        if found.contains("background verification") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.stop(), 0);
    assert!(
        found.contains("motionlog") && found.contains("changed on the media"),
        "the background pass quarantined motionlog: {found:?}"
    );
    let next = s.boot();
    assert_eq!(
        state_of(&next, "motionlog"),
        "quarantined",
        "{}",
        next.all()
    );
    assert_eq!(state_of(&next, "plugindemo"), "stopped", "{}", next.all());
    drop(mount);
}

/// Every folder is checked, on several threads, before the main thread
/// loads the plugins whose checks passed (docs/verification.md). A plugin
/// in the middle of the order whose library was changed after install is
/// refused and so is everything that depends on it, and none of their code
/// runs (their recorders write nothing); the plugins around them load, in
/// the resolver's order.
#[test]
fn a_refused_plugin_and_its_dependents_never_run_while_the_others_load_around_them() {
    let s = Scenario::new();
    // A binary tree: q(i) depends on q((i - 1) / 2), 20 plugins.
    let name = |i: usize| format!("q{i:02}");
    for i in 0..20 {
        let lib = xplugin_tests::build::c_fixture(
            &name(i),
            &["FIXTURE_RECORD", "FIXTURE_VERSION=\"1.0.0\""],
        );
        let depend = (i > 0).then(|| name((i - 1) / 2));
        let depend: Vec<&str> = depend.iter().map(String::as_str).collect();
        s.add_controller_fixture(&name(i), &lib, "1.0.0", &depend);
    }
    s.license_all();
    s.import(&s.pack("overlap"), &[]).ok();
    let first = s.boot();
    for i in 0..20 {
        assert_eq!(state_of(&first, &name(i)), "stopped", "{}", first.all());
    }
    let data = s.controller_root.join("data");
    for i in 0..20 {
        std::fs::remove_file(data.join(name(i)).join("trace.log")).unwrap();
    }

    // q03's subtree: q07, q08, q15, q16, q17, q18.
    let lib = installed(&s.controller_root, "q03.so");
    let mut bytes = std::fs::read(&lib).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&lib, &bytes).unwrap();
    let refused = ["q03", "q07", "q08", "q15", "q16", "q17", "q18"];

    let run = s.boot();
    let report = run.json();
    let order: Vec<String> = report["load_order"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(String::from))
        .filter(|n| n.starts_with('q'))
        .collect();
    for i in 0..20 {
        let n = name(i);
        let trace = data.join(&n).join("trace.log");
        if refused.contains(&n.as_str()) {
            assert_eq!(state_of(&run, &n), "blocked", "{n}: {}", run.all());
            assert!(!trace.exists(), "{n} is refused, yet its code ran");
            assert!(!order.contains(&n), "{n} in the load order {order:?}");
        } else {
            assert_eq!(state_of(&run, &n), "stopped", "{n}: {}", run.all());
            let calls = std::fs::read_to_string(&trace).unwrap();
            assert!(calls.starts_with(&format!("{n}:init")), "{n}: {calls}");
            assert!(order.contains(&n), "{n} not in the load order {order:?}");
        }
    }
    // Every dependency before its dependents, ties by name.
    let position = |n: &str| order.iter().position(|o| o == n).unwrap();
    for n in &order {
        let i: usize = n[1..].parse().unwrap();
        if i > 0 {
            assert!(position(&name((i - 1) / 2)) < position(n), "{order:?}");
        }
    }
    let reason = report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "q16")
        .and_then(|p| p["reason"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("q07") && reason.contains("q03"), "{reason}");
    assert!(hash_mismatch_of(&run, "q03"), "{}", run.all());
}
