//! An end-to-end scenario for CLI tests: a vendor key, a trust store, host
//! configurations bound to a generated machine id, the example plugins laid
//! out as package folders, and runners for the three programs. Everything
//! lives in one temporary directory.

use crate::build::{
    bin_path, cdylib_path, client_manifest, controller_manifest, motionlog_path, plugin_folder,
    target_command, workspace_root,
};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The fault settings of the scenario's controller configuration: a step
/// must stand still for 10 s before the supervisor calls it hung (the
/// default, 100 ms, is for a real-time thread on a controller).
pub const TEST_FAULTS: &str = r#"{ "step_timeout_ms": 10000 }"#;

/// A temporary world: vendor, pendant and controller on one machine.
pub struct Scenario {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// Vendor key directory (`demo.key`, `demo.pub`).
    pub keys: PathBuf,
    /// Trusted keys of the devices.
    pub trust: PathBuf,
    /// The device's machine-id file.
    pub machine_id: PathBuf,
    /// Pendant configuration.
    pub client_config: PathBuf,
    /// Controller configuration.
    pub controller_config: PathBuf,
    /// Pendant install root.
    pub client_root: PathBuf,
    /// Controller install root.
    pub controller_root: PathBuf,
    /// Plugin folders: `plugins/client/NAME`, `plugins/controller/NAME`.
    pub plugins: PathBuf,
    /// This device's id.
    pub device_id: String,
}

/// Output as text, for assertions with context.
pub struct Run {
    /// Exit code (-1 if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Both streams, for messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Panics unless the exit code is 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{}", self.all());
        self
    }

    /// The stdout parsed as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.all()))
    }
}

/// Runs a workspace program with arguments.
pub fn run_program(name: &str, args: &[&str]) -> Run {
    let out = target_command(&bin_path(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    Run::from(out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Scenario {
    /// Builds the world with the four example plugins laid out (unlicensed).
    pub fn new() -> Scenario {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().to_path_buf();
        let machine_id = d.join("machine-id");
        std::fs::write(&machine_id, "0123456789abcdef0123456789abcdef\n").expect("machine-id");
        let keys = d.join("keys");
        let trust = d.join("trust");
        std::fs::create_dir_all(&trust).expect("trust dir");
        for (name, file) in [("client", "client.json"), ("controller", "controller.json")] {
            // The controller's fault supervisor calls a step hung after
            // 100 ms by default; on a shared CI machine, and under qemu, a
            // test's cycle thread runs at normal priority and may simply not
            // be scheduled for that long. The fault tests set their own.
            let faults = if name == "controller" {
                format!(",\n  \"faults\": {}", TEST_FAULTS)
            } else {
                String::new()
            };
            std::fs::write(
                d.join(file),
                format!(
                    "{{\n  // {name} test host\n  \"trusted_keys_dir\": {},\n  \"device\": {{ \"machine_id_file\": {} }}{faults}\n}}\n",
                    serde_json::Value::from(trust.to_string_lossy()),
                    serde_json::Value::from(machine_id.to_string_lossy())
                ),
            )
            .expect("config");
        }
        let s = Scenario {
            keys: keys.clone(),
            trust: trust.clone(),
            client_config: d.join("client.json"),
            controller_config: d.join("controller.json"),
            client_root: d.join("pendant"),
            controller_root: d.join("controller"),
            plugins: d.join("plugins"),
            device_id: String::new(),
            machine_id,
            tmp,
        };
        run_program(
            "xplugin-pack",
            &[
                "keygen",
                "--out",
                keys.to_str().unwrap_or_default(),
                "--key-id",
                "demo",
            ],
        )
        .ok();
        std::fs::copy(keys.join("demo.pub"), trust.join("demo.pub")).expect("install public key");
        let id = s.client(&["device-id"]).ok().stdout.trim().to_string();
        let s = Scenario { device_id: id, ..s };
        s.layout_examples();
        s
    }

    fn layout_examples(&self) {
        let root = workspace_root();
        let client = self.plugins.join("client");
        let controller = self.plugins.join("controller");
        plugin_folder(
            &client,
            "plugindemo",
            &cdylib_path("plugindemo_client"),
            &read(&root.join("examples/plugindemo-client/plugindemo.json")),
        );
        plugin_folder(
            &client,
            "uikit",
            &cdylib_path("uikit_client"),
            &read(&root.join("examples/uikit-client/uikit.json")),
        );
        plugin_folder(
            &controller,
            "plugindemo",
            &cdylib_path("plugindemo_controller"),
            &read(&root.join("examples/plugindemo-controller/plugindemo.json")),
        );
        plugin_folder(
            &controller,
            "motionlog",
            &motionlog_path(),
            &read(&root.join("examples/motionlog-c/motionlog.json")),
        );
    }

    /// Adds a controller plugin folder from a C fixture library.
    pub fn add_controller_fixture(&self, name: &str, lib: &Path, version: &str, depend: &[&str]) {
        plugin_folder(
            &self.plugins.join("controller"),
            name,
            lib,
            &controller_manifest(name, version, depend, None),
        );
    }

    /// Adds a client plugin folder.
    pub fn add_client_plugin(
        &self,
        name: &str,
        lib: &Path,
        version: &str,
        depend: &[&str],
        ctrl: &[&str],
    ) {
        plugin_folder(
            &self.plugins.join("client"),
            name,
            lib,
            &client_manifest(name, version, depend, ctrl),
        );
    }

    /// Path of a plugin folder.
    pub fn folder(&self, side: &str, name: &str) -> PathBuf {
        self.plugins.join(side).join(name)
    }

    /// Licenses one plugin folder for this device.
    pub fn license(&self, side: &str, name: &str, extra: &[&str]) -> Run {
        let key = self.keys.join("demo.key");
        let dir = self.folder(side, name);
        let mut args = vec![
            "license",
            "--key",
            key.to_str().unwrap_or_default(),
            "--plugin-dir",
            dir.to_str().unwrap_or_default(),
            "--side",
            side,
            "--devices",
            &self.device_id,
            "--versions",
            ">=0.0.1, <100",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_program("xplugin-pack", &args)
    }

    /// Licenses every plugin folder for this device (perpetual).
    pub fn license_all(&self) {
        for side in ["client", "controller"] {
            let dir = self.plugins.join(side);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                self.license(side, &name, &[]).ok();
            }
        }
    }

    /// Packs `plugins/` into `NAME.zip` in the scenario directory.
    pub fn pack(&self, name: &str) -> PathBuf {
        let out = self.tmp.path().join(format!("{name}.zip"));
        let client = self.plugins.join("client");
        let controller = self.plugins.join("controller");
        let mut args = vec!["pack".to_string()];
        if client.is_dir() {
            args.extend(["--client".into(), client.to_string_lossy().into_owned()]);
        }
        if controller.is_dir() {
            args.extend([
                "--controller".into(),
                controller.to_string_lossy().into_owned(),
            ]);
        }
        args.extend(["-o".into(), out.to_string_lossy().into_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_program("xplugin-pack", &args).ok();
        out
    }

    /// Runs `xplugin-client` with `--config` and `--root` set.
    pub fn client(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let cfg = self.client_config.to_string_lossy().into_owned();
        let root = self.client_root.to_string_lossy().into_owned();
        all.extend(["--config", &cfg, "--root", &root]);
        run_program("xplugin-client", &all)
    }

    /// Imports a package with the standard host versions.
    pub fn import(&self, package: &Path, extra: &[&str]) -> Run {
        let pkg = package.to_string_lossy().into_owned();
        let croot = self.controller_root.to_string_lossy().into_owned();
        let ccfg = self.controller_config.to_string_lossy().into_owned();
        let mut args = vec![
            "import",
            &pkg,
            "--controller-root",
            &croot,
            "--controller-config",
            &ccfg,
            "--hmi-version",
            "3.0.2",
            "--controller-version",
            "2.1.0",
        ];
        args.extend_from_slice(extra);
        self.client(&args)
    }

    /// Runs `xplugin-controller` with `--config` and `--root` set.
    pub fn controller(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let cfg = self.controller_config.to_string_lossy().into_owned();
        let root = self.controller_root.to_string_lossy().into_owned();
        all.extend(["--config", &cfg, "--root", &root]);
        run_program("xplugin-controller", &all)
    }

    /// Boots the controller (`--cycles 3`) with version 2.1.0 and `--json`.
    pub fn boot(&self) -> Run {
        self.controller(&[
            "boot",
            "--controller-version",
            "2.1.0",
            "--cycles",
            "3",
            "--json",
        ])
    }

    /// A digest of every file (path, mode, content) under the two roots, for
    /// "nothing changed" assertions.
    pub fn roots_digest(&self) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        for root in [&self.client_root, &self.controller_root] {
            digest_tree(root, root, &mut out);
        }
        out.sort();
        out
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

fn digest_tree(base: &Path, dir: &Path, out: &mut Vec<(String, u32, Vec<u8>)>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p
            .strip_prefix(base)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&p).map(|t| t.to_string_lossy().into_owned().into_bytes());
            out.push((rel, meta.mode(), target.unwrap_or_default()));
        } else if meta.is_dir() {
            out.push((rel, meta.mode(), Vec::new()));
            digest_tree(base, &p, out);
        } else {
            out.push((rel, meta.mode(), std::fs::read(&p).unwrap_or_default()));
        }
    }
}
