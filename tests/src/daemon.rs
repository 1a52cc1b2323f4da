//! A real `xplugin-controller run` for the tests: started in the background
//! on a scenario's controller root with its own admin socket, waited for by
//! retrying `status` (as an integrator's script would), stopped with
//! SIGTERM (its exit status checked) or killed.

use crate::build::{bin_path, target_command};
use crate::scenario::{run_program, Run, Scenario};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// Its admin socket.
    pub socket: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
    config: PathBuf,
    root: PathBuf,
}

/// How long a daemon may take to answer `status` after it was started (a
/// boot verifies every plugin; slow under qemu).
pub fn ready_timeout() -> Duration {
    if crate::build::runner_prefix().is_empty() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(180)
    }
}

impl Daemon {
    /// Starts `xplugin-controller run` on the scenario's controller root
    /// (version 2.1.0) with `extra` arguments and waits until `status`
    /// answers.
    ///
    /// # Panics
    /// If it does not start or does not answer in time.
    pub fn start(s: &Scenario, extra: &[&str]) -> Daemon {
        Daemon::start_with(s, &s.controller_config, extra)
    }

    /// As [`Daemon::start`] with another configuration file.
    pub fn start_with(s: &Scenario, config: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_env(s, config, extra, &[], true)
    }

    /// Starts the daemon with extra environment (a failpoint); with
    /// `wait`, waits until `status` answers.
    pub fn start_env(
        s: &Scenario,
        config: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        wait: bool,
    ) -> Daemon {
        let socket = s.tmp.path().join("admin.sock");
        let log = s.tmp.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let child = Daemon::spawn(s, config, &socket, &log, extra, env);
        let mut d = Daemon {
            child: Some(child),
            socket,
            log,
            config: config.to_path_buf(),
            root: s.controller_root.clone(),
        };
        if wait {
            d.wait_ready();
        }
        d
    }

    /// Spawns the daemon process without waiting.
    pub fn spawn(
        s: &Scenario,
        config: &Path,
        socket: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Child {
        let mut cmd = target_command(&bin_path("xplugin-controller"));
        cmd.arg("run")
            .arg("--root")
            .arg(&s.controller_root)
            .arg("--config")
            .arg(config)
            .args(["--controller-version", "2.1.0", "--cycle-us", "2000"])
            .arg("--admin-socket")
            .arg(socket)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display())),
            );
        // A service manager's variables reach only the daemons that a test
        // hands them (the tests may themselves run under systemd).
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start the daemon: {e}"))
    }

    /// Retries `status` until it answers.
    ///
    /// # Panics
    /// After [`ready_timeout`], with the daemon's log.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let r = self.status();
            if r.code == 0 {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the daemon exited ({status}) before it answered status:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < ready_timeout(),
                "the daemon did not answer status in time: {}\n--- daemon log\n{}",
                r.all(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `xplugin-controller status --json` through the socket.
    pub fn status(&self) -> Run {
        self.cli(&["status", "--json"])
    }

    /// `status`'s running generation and each plugin's (name, state).
    pub fn running(&self) -> (Option<u64>, Vec<(String, String)>) {
        let v = self.status().ok().json();
        (v["generation"]["running"].as_u64(), plugin_states(&v))
    }

    /// Runs an `xplugin-controller` command with this daemon's root,
    /// configuration and socket.
    pub fn cli(&self, args: &[&str]) -> Run {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--root".into(),
            self.root.to_string_lossy().into_owned(),
            "--config".into(),
            self.config.to_string_lossy().into_owned(),
            "--admin-socket".into(),
            self.socket.to_string_lossy().into_owned(),
        ]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run_program("xplugin-controller", &refs)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and waits (at most a minute) for it to exit; returns
    /// its exit code.
    ///
    /// # Panics
    /// If it does not exit in time.
    pub fn stop(mut self) -> i32 {
        let Some(mut child) = self.child.take() else {
            return -1;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the daemon did not stop on SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the daemon process to exit on its own (a failpoint killed
    /// it); returns how it ended.
    ///
    /// # Panics
    /// If it is still running after `timeout`.
    pub fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap_or_else(|| panic!("no daemon"));
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!("the daemon did not exit:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Each plugin's (name, state) in a report's `plugins` list (boot, status).
pub fn plugin_states(report: &serde_json::Value) -> Vec<(String, String)> {
    report["plugins"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or("").to_string(),
                        p["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
