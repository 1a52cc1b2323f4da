//! Two real processes over loopback for the pendant link tests: a daemon
//! (`xplugin-controller run --listen 127.0.0.1:PORT`) on the scenario's
//! controller root and `xplugin-client` on its pendant root, paired both
//! ways through their own commands.

use crate::build::{bin_path, target_command};
use crate::daemon::Daemon;
use crate::scenario::{Run, Scenario};
use std::path::Path;

/// A free loopback port (bound and released; the daemon binds it next).
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// The first line of `identity` (the public key) of one side.
pub fn identity(s: &Scenario, program: &str) -> String {
    let r = match program {
        "xplugin-client" => s.client(&["identity"]),
        _ => s.controller(&["identity"]),
    };
    let r = r.ok();
    r.stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Pairs the scenario's pendant and controller (the controller at
/// `address`), the pendant with `role`.
pub fn pair(s: &Scenario, address: &str, role: &str) {
    let ck = identity(s, "xplugin-controller");
    let pk = identity(s, "xplugin-client");
    s.controller(&["pair", &pk, "--role", role]).ok();
    s.client(&["pair", address, &ck]).ok();
}

/// Starts the daemon serving the link on `address`, with `env`.
pub fn daemon(s: &Scenario, address: &str, env: &[(&str, &str)]) -> Daemon {
    Daemon::start_env(s, &s.controller_config, &["--listen", address], env, true)
}

/// `xplugin-client ARGS --config --root` with `env`.
pub fn client_env(s: &Scenario, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = target_command(&bin_path("xplugin-client"));
    cmd.args(args)
        .arg("--config")
        .arg(&s.client_config)
        .arg("--root")
        .arg(&s.client_root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run xplugin-client: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `xplugin-client import PKG --controller ADDRESS --hmi-version 3.0.2 --yes
/// --json EXTRA` with `env`.
pub fn import_online(
    s: &Scenario,
    package: &Path,
    address: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let pkg = package.to_string_lossy().into_owned();
    let mut args = vec![
        "import",
        pkg.as_str(),
        "--controller",
        address,
        "--hmi-version",
        "3.0.2",
        "--yes",
        "--json",
    ];
    args.extend_from_slice(extra);
    client_env(s, &args, env)
}
