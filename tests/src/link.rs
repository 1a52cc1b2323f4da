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

/// `xplugin-client run --until-stopped --hmi-version 3.0.2 --controller
/// ADDRESS --config --root` of the scenario's pendant, to spawn.
pub fn pendant_runner(s: &Scenario, address: &str) -> std::process::Command {
    let mut cmd = target_command(&bin_path("xplugin-client"));
    cmd.args([
        "run",
        "--until-stopped",
        "--hmi-version",
        "3.0.2",
        "--controller",
        address,
    ])
    .arg("--config")
    .arg(&s.client_config)
    .arg("--root")
    .arg(&s.client_root);
    cmd
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

/// A deterministic subset under emulation (every process start costs
/// seconds there): `n` of `points` chosen by a fixed seed; all of them on
/// the host.
pub fn seeded<T>(points: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    if crate::build::runner_prefix().is_empty() || points.len() <= n {
        return points;
    }
    let mut state = seed;
    let mut pool = points;
    let mut out = Vec::new();
    while out.len() < n && !pool.is_empty() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push(pool.remove((state >> 33) as usize % pool.len()));
    }
    out
}

/// Every file under `dir` (relative path -> contents).
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The installed plugin files of an install root's current generation.
pub fn installed(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    tree(&root.join("current").join("plugins"))
}

/// Copies a directory tree.
///
/// # Panics
/// On any I/O error.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap_or_else(|e| panic!("{e}"));
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

/// What a loopback proxy does to the pendant's frames on their way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Pass everything.
    Nothing,
    /// Send pendant frame N (0-based) twice.
    Duplicate(usize),
    /// Send pendant frames N and N+1 in the other order.
    Swap(usize),
}

/// A proxy between a pendant and the controller that records the pendant's
/// bytes (to replay them later) and can tamper with its frames.
pub struct Proxy {
    /// Where the pendant connects.
    pub address: String,
    /// Every byte the pendant sent, per connection.
    pub recorded: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    /// Starts the proxy towards `target` (it serves `connections`
    /// connections, then stops; only the first is tampered with).
    ///
    /// # Panics
    /// If it cannot listen.
    pub fn start(target: &str, tamper: Tamper, connections: usize) -> Proxy {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = l.local_addr().expect("address").to_string();
        let recorded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = recorded.clone();
        let target = target.to_string();
        std::thread::spawn(move || {
            for i in 0..connections {
                let tamper = if i == 0 { tamper } else { Tamper::Nothing };
                let Ok((mut pendant, _)) = l.accept() else {
                    return;
                };
                let Ok(mut controller) = std::net::TcpStream::connect(&target) else {
                    return;
                };
                let (Ok(mut back_from), Ok(mut back_to)) =
                    (controller.try_clone(), pendant.try_clone())
                else {
                    return;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back_from, &mut back_to);
                    let _ = back_to.shutdown(std::net::Shutdown::Both);
                });
                let rec = rec.clone();
                std::thread::spawn(move || {
                    let mut all = Vec::new();
                    let mut held: Option<Vec<u8>> = None;
                    let mut n = 0;
                    loop {
                        let mut prefix = [0u8; 4];
                        if pendant.read_exact(&mut prefix).is_err() {
                            break;
                        }
                        let len = u32::from_be_bytes(prefix) as usize;
                        let mut body = vec![0u8; len.min(1 << 17)];
                        if pendant.read_exact(&mut body).is_err() {
                            break;
                        }
                        let mut frame = prefix.to_vec();
                        frame.extend_from_slice(&body);
                        all.extend_from_slice(&frame);
                        let out: Vec<Vec<u8>> = match tamper {
                            Tamper::Duplicate(k) if k == n => vec![frame.clone(), frame],
                            Tamper::Swap(k) if k == n => {
                                held = Some(frame);
                                Vec::new()
                            }
                            Tamper::Swap(k) if k + 1 == n => {
                                vec![frame, held.take().unwrap_or_default()]
                            }
                            _ => vec![frame],
                        };
                        n += 1;
                        let mut failed = false;
                        for f in out {
                            failed |= controller.write_all(&f).is_err();
                        }
                        if failed {
                            break;
                        }
                    }
                    let _ = controller.shutdown(std::net::Shutdown::Both);
                    rec.lock().unwrap_or_else(|e| e.into_inner()).push(all);
                });
            }
        });
        Proxy { address, recorded }
    }
}
