//! The Mender update module (packaging/mender/xplugin-package) driven by
//! Debian's real `mender` client in standalone mode (`mender install`,
//! `mender commit`), with its state in a scratch `--data` directory: a good
//! package ends committed and running; a package licensed for another device
//! fails in ArtifactInstall and leaves the old set running; a package whose
//! plugin fails at boot is rolled back by Mender through the module; without
//! a daemon the module installs on the root. And the inventory script.
//!
//! What Mender 3.4 does not let a scratch prefix change: update modules are
//! looked up in /usr/share/mender/modules/v3 (ModulesPath is not read in
//! standalone mode) and a device that never installed an artifact needs
//! /etc/mender/artifact_info; the test installs the module there (the file
//! the Debian package installs) and creates that file if it is missing.
//! Needs root and `mender`, `mender-artifact` and `jq` (scripts/test installs
//! them); skipped with a message elsewhere, and under emulation (the module
//! would run target binaries through the host's shell).

use std::path::{Path, PathBuf};
use std::process::Command;
use xplugin_tests::build::{bin_path, c_fixture, runner_prefix, workspace_root};
use xplugin_tests::daemon::Daemon;
use xplugin_tests::scenario::Scenario;

const DEVICE_TYPE: &str = "xplugin-test";
const MODULE_DIR: &str = "/usr/share/mender/modules/v3";

/// A scratch Mender client and the module's settings for one scenario.
struct Rig {
    dir: tempfile::TempDir,
    module_conf: PathBuf,
    config: PathBuf,
}

struct Said {
    code: i32,
    text: String,
}

/// None (with the reason printed) when the tools are not here.
fn usable() -> Option<()> {
    if !runner_prefix().is_empty() {
        eprintln!(
            "SKIPPED: Mender tests run on the host only (the module would run emulated binaries)"
        );
        return None;
    }
    let missing: Vec<&str> = ["mender", "mender-artifact", "jq"]
        .into_iter()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    let root = nix::unistd::geteuid().is_root();
    if missing.is_empty() && root {
        return Some(());
    }
    let why = if root {
        format!(
            "{} not installed (apt-get install mender-client mender-artifact jq)",
            missing.join(", ")
        )
    } else {
        "standalone mender install needs root".to_string()
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "on CI the Mender tests must run: {why}"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// Installs the repository's module where Mender looks (atomically: other
/// tests may be running it).
fn install_module() {
    let src = workspace_root().join("packaging/mender/xplugin-package");
    let text = std::fs::read(&src).expect("the module");
    let dest = Path::new(MODULE_DIR).join("xplugin-package");
    if std::fs::read(&dest).ok().as_deref() == Some(&text[..]) {
        return;
    }
    std::fs::create_dir_all(MODULE_DIR).expect("module dir");
    let tmp = Path::new(MODULE_DIR).join(format!(".xplugin-package.{}", std::process::id()));
    std::fs::write(&tmp, &text).expect("write the module");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &dest).expect("install the module");
    let info = Path::new("/etc/mender/artifact_info");
    if !info.exists() {
        std::fs::create_dir_all("/etc/mender").unwrap();
        // What a device flashed without Mender's image tools lacks.
        std::fs::write(info, "artifact_name=factory-image\n").unwrap();
    }
}

impl Rig {
    fn new(s: &Scenario, socket: &Path) -> Rig {
        install_module();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("device_type"),
            format!("device_type={DEVICE_TYPE}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("mender.conf"), "{}\n").unwrap();
        std::fs::write(dir.path().join("fallback.conf"), "{}\n").unwrap();
        // The daemon's configuration plus the version a local install needs;
        // no APPLY in the module's settings: the daemon's policy applies
        // (when-idle, at once here: no plugin holds the controller busy).
        let mut cfg: serde_json::Value = serde_json::json!({
            "trusted_keys_dir": s.trust.to_string_lossy(),
            "device": { "machine_id_file": s.machine_id.to_string_lossy() },
            "host_version": "2.1.0",
            "faults": serde_json::from_str::<serde_json::Value>(xplugin_tests::scenario::TEST_FAULTS).unwrap(),
        });
        cfg["admin_socket"] = socket.to_string_lossy().into_owned().into();
        let config = dir.path().join("controller.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let module_conf = dir.path().join("xplugin-mender.conf");
        std::fs::write(
            &module_conf,
            format!(
                "CONTROLLER='{}'\nCONFIG='{}'\nROOT='{}'\nADMIN_SOCKET='{}'\nWAIT=120\n",
                bin_path("xplugin-controller").display(),
                config.display(),
                s.controller_root.display(),
                socket.display()
            ),
        )
        .unwrap();
        Rig {
            dir,
            module_conf,
            config,
        }
    }

    /// `mender-artifact write module-image -T xplugin-package -f PKG ...`.
    fn artifact(&self, package: &Path, name: &str) -> PathBuf {
        let out = self.dir.path().join(format!("{name}.mender"));
        let o = Command::new("mender-artifact")
            .args(["write", "module-image", "-T", "xplugin-package", "-f"])
            .arg(package)
            .args(["-n", name, "-t", DEVICE_TYPE, "-o"])
            .arg(&out)
            .output()
            .expect("mender-artifact");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    }

    fn mender(&self, args: &[&str]) -> Said {
        let d = self.dir.path();
        let o = Command::new("mender")
            .arg("--config")
            .arg(d.join("mender.conf"))
            .arg("--fallback-config")
            .arg(d.join("fallback.conf"))
            .arg("--data")
            .arg(d.join("data"))
            .arg("--no-syslog")
            .args(args)
            .env("XPLUGIN_MENDER_CONF", &self.module_conf)
            .output()
            .expect("mender");
        Said {
            code: o.status.code().unwrap_or(-1),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }

    fn install(&self, artifact: &Path) -> Said {
        self.mender(&["install", &artifact.to_string_lossy()])
    }

    fn current_artifact(&self) -> String {
        self.mender(&["show-artifact"])
            .text
            .lines()
            .rfind(|l| !l.contains("level="))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn inventory(&self) -> Vec<String> {
        let o = Command::new(workspace_root().join("packaging/mender/mender-inventory-xplugin"))
            .env("XPLUGIN_MENDER_CONF", &self.module_conf)
            .output()
            .expect("inventory script");
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Generation 1 (the two example plugins) installed; the daemon runs it.
fn running_v1() -> (Scenario, Daemon, Rig) {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    let socket = s.tmp.path().join("admin.sock");
    let rig = Rig::new(&s, &socket);
    let d = Daemon::start_with(&s, &rig.config, &[]);
    (s, d, rig)
}

/// Adds a controller fixture plugin, licensed for `devices`.
fn add_plugin(s: &Scenario, name: &str, defines: &[&str], devices: &str) {
    let mut all = vec![format!("FIXTURE_NAME=\"{name}\"")];
    all.extend(defines.iter().map(|d| d.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    s.add_controller_fixture(name, &c_fixture(name, &refs), "0.1.0", &[]);
    let key = s.keys.join("demo.key");
    let dir = s.folder("controller", name);
    xplugin_tests::scenario::run_program(
        "xplugin-pack",
        &[
            "license",
            "--key",
            &key.to_string_lossy(),
            "--plugin-dir",
            &dir.to_string_lossy(),
            "--side",
            "controller",
            "--devices",
            devices,
            "--versions",
            ">=0.0.1, <100",
        ],
    )
    .ok();
}

/// (running generation, committed generation, plugin name → state).
fn state(d: &Daemon) -> (Option<u64>, Option<u64>, Vec<(String, String)>) {
    let (running, plugins) = d.running();
    let committed = d.status().ok().json()["generation"]["committed"].as_u64();
    (running, committed, plugins)
}

/// Asserts the inventory has each of `lines`.
fn assert_inventory(inventory: &[String], lines: &[&str]) {
    for line in lines {
        assert!(
            inventory.iter().any(|l| l == line),
            "the inventory lacks {line:?}: {inventory:?}"
        );
    }
}

fn all_running(plugins: &[(String, String)]) -> bool {
    !plugins.is_empty() && plugins.iter().all(|(_, st)| st == "running")
}

#[test]
fn a_good_package_ends_committed_and_running_and_the_inventory_reports_it() {
    let Some(()) = usable() else { return };
    let (s, d, rig) = running_v1();
    let before = rig.inventory();
    assert_inventory(
        &before,
        &["xplugin_daemon=running", "xplugin_generation_running=1"],
    );
    add_plugin(&s, "counter", &["FIXTURE_STEP"], &s.device_id);
    let art = rig.artifact(&s.pack("v2"), "plugins-2");

    let r = rig.install(&art);
    assert_eq!(
        r.code,
        0,
        "mender install:\n{}\n--- daemon\n{}",
        r.text,
        d.log_text()
    );
    // Prepared only: the old set runs until the commit.
    let (running, committed, _) = state(&d);
    assert_eq!((running, committed), (Some(1), Some(1)), "{}", r.text);

    let r = rig.mender(&["commit"]);
    assert_eq!(
        r.code,
        0,
        "mender commit:\n{}\n--- daemon\n{}",
        r.text,
        d.log_text()
    );
    let (running, committed, plugins) = state(&d);
    assert_eq!((running, committed), (Some(2), Some(2)), "{}", r.text);
    assert!(all_running(&plugins), "{plugins:?}");
    assert!(plugins.iter().any(|(n, _)| n == "counter"), "{plugins:?}");
    assert_eq!(rig.current_artifact(), "plugins-2");

    let inv = rig.inventory();
    assert_inventory(
        &inv,
        &[
            "xplugin_generation_running=2",
            "xplugin_plugin=counter 0.1.0 running",
            "xplugin_plugin=plugindemo 1.0.0 running",
        ],
    );
    assert_eq!(d.stop(), 0);
    let inv = rig.inventory();
    assert_inventory(
        &inv,
        &[
            "xplugin_daemon=not-running",
            "xplugin_plugin=counter 0.1.0 installed",
        ],
    );
}

#[test]
fn a_package_licensed_for_another_device_fails_in_artifact_install_and_the_old_set_runs_on() {
    let Some(()) = usable() else { return };
    let (s, d, rig) = running_v1();
    add_plugin(&s, "foreign", &[], "ffffffffffffffffffffffffffffffff");
    let art = rig.artifact(&s.pack("foreign"), "plugins-foreign");

    let r = rig.install(&art);
    assert_ne!(r.code, 0, "mender install should fail:\n{}", r.text);
    assert!(r.text.contains("ArtifactInstall"), "{}", r.text);
    assert!(
        r.text.contains("foreign"),
        "the refusal names the plugin:\n{}",
        r.text
    );
    assert!(r.text.contains("refused"), "{}", r.text);
    let (running, committed, plugins) = state(&d);
    assert_eq!((running, committed), (Some(1), Some(1)));
    assert!(all_running(&plugins), "{plugins:?}");
    assert!(!plugins.iter().any(|(n, _)| n == "foreign"), "{plugins:?}");
    assert_ne!(rig.current_artifact(), "plugins-foreign");
    // Nothing is left prepared.
    let v = d.status().ok().json();
    assert!(v["generation"]["prepared"].is_null(), "{v}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_package_whose_plugin_fails_at_boot_is_rolled_back_by_mender() {
    let Some(()) = usable() else { return };
    let (s, d, rig) = running_v1();
    add_plugin(&s, "brittle", &["FIXTURE_FAIL_INIT"], &s.device_id);
    let art = rig.artifact(&s.pack("brittle"), "plugins-brittle");

    let r = rig.install(&art);
    assert_eq!(r.code, 0, "it verifies fine:\n{}", r.text);
    let r = rig.mender(&["commit"]);
    assert_ne!(r.code, 0, "the commit must fail:\n{}", r.text);
    assert!(r.text.contains("Rolling back"), "{}", r.text);
    // Mender ran ArtifactRollback: generation 1 is committed and runs again.
    let (running, committed, plugins) = state(&d);
    assert_eq!(
        (running, committed),
        (Some(1), Some(1)),
        "{}\n--- daemon\n{}",
        r.text,
        d.log_text()
    );
    assert!(all_running(&plugins), "{plugins:?}");
    assert!(!plugins.iter().any(|(n, _)| n == "brittle"), "{plugins:?}");
    assert_ne!(rig.current_artifact(), "plugins-brittle");
    assert_eq!(d.stop(), 0);
}

#[test]
fn without_a_daemon_the_module_installs_on_the_root_and_the_set_boots_at_the_next_start() {
    let Some(()) = usable() else { return };
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    let socket = s.tmp.path().join("admin.sock");
    let rig = Rig::new(&s, &socket);
    add_plugin(&s, "counter", &["FIXTURE_STEP"], &s.device_id);
    let art = rig.artifact(&s.pack("v2"), "plugins-2");
    // The root belongs to an unprivileged service user (here `nobody`), as
    // with the packaged unit: the module must act as that user, or the
    // daemon could not write what it installed.
    let nobody = nix::unistd::Uid::from_raw(65534);
    for dir in [s.tmp.path(), rig.dir.path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    chown_tree(&s.controller_root, nobody);
    let r = rig.install(&art);
    assert_eq!(r.code, 0, "{}", r.text);
    let r = rig.mender(&["commit"]);
    assert_eq!(r.code, 0, "{}", r.text);
    assert!(
        r.text.contains("boots at the daemon's next start"),
        "{}",
        r.text
    );
    let foreign = owned_by_others(&s.controller_root, nobody);
    assert!(
        foreign.is_empty(),
        "written as another user than the root's owner: {foreign:?}"
    );
    let d = Daemon::start_with(&s, &rig.config, &[]);
    let (running, committed, plugins) = state(&d);
    assert_eq!((running, committed), (Some(2), Some(2)));
    assert!(all_running(&plugins), "{plugins:?}");
    assert_eq!(d.stop(), 0);
}

fn chown_tree(path: &Path, uid: nix::unistd::Uid) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(uid),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid);
        }
    }
}

fn owned_by_others(path: &Path, uid: nix::unistd::Uid) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.uid() != uid.as_raw() {
            out.push(path.to_path_buf());
        }
        if m.is_dir() {
            for e in std::fs::read_dir(path).unwrap().flatten() {
                out.extend(owned_by_others(&e.path(), uid));
            }
        }
    }
    out
}

#[test]
fn mender_rollback_before_the_commit_aborts_the_prepared_install() {
    let Some(()) = usable() else { return };
    let (s, d, rig) = running_v1();
    add_plugin(&s, "counter", &["FIXTURE_STEP"], &s.device_id);
    let art = rig.artifact(&s.pack("v2"), "plugins-2");
    let r = rig.install(&art);
    assert_eq!(r.code, 0, "{}", r.text);
    let v = d.status().ok().json();
    assert!(!v["generation"]["prepared"].is_null(), "prepared: {v}");
    let r = rig.mender(&["rollback"]);
    assert_eq!(r.code, 0, "mender rollback:\n{}", r.text);
    assert!(r.text.contains("aborted install transaction"), "{}", r.text);
    let v = d.status().ok().json();
    assert!(
        v["generation"]["prepared"].is_null(),
        "nothing prepared: {v}"
    );
    let (running, committed, plugins) = state(&d);
    assert_eq!((running, committed), (Some(1), Some(1)));
    assert!(all_running(&plugins), "{plugins:?}");
    assert_ne!(rig.current_artifact(), "plugins-2");
    assert_eq!(d.stop(), 0);
}
