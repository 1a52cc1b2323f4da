//! `xplugin-controller diagnostics -o FILE`: one zip archive a support
//! engineer can read, with what explains a controller's state: versions,
//! the configuration (secrets redacted), the installed plugins, the running
//! daemon's status and timing (when one answers), the last run's crash
//! record, the quarantine and its evidence, install transactions, and the
//! recent log lines.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Keys whose values are never written (any key containing one of these).
const SECRET_KEYS: [&str; 5] = ["password", "secret", "token", "private", "key_file"];

/// Replaces the value of every secret-looking key (recursively) by
/// `"********"`.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let lower = k.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                    *val = Value::String("********".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// One file of the archive.
pub struct Part {
    /// Its name in the archive.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Part {
    /// A JSON part, pretty-printed.
    pub fn json(name: &str, value: &Value) -> Part {
        Part {
            name: name.to_string(),
            bytes: serde_json::to_vec_pretty(value).unwrap_or_default(),
        }
    }
}

fn journal_json(root: &Path) -> Value {
    match crate::journal::read_last(&crate::quarantine::journal_path(root)) {
        None => Value::String("no journal".into()),
        Some(last) => serde_json::json!({
            "state": format!("{:?}", last.state),
            "pid": last.pid,
            "boot_id": last.boot_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "generation": last.generation,
            "plugins": last.names,
            "inside_a_plugin": last.inside.iter().map(|i| serde_json::json!({
                "thread": i.role, "plugin": i.plugin,
                "stage": i.stage.map(|s| s.to_string()), "since_ns": i.since_ns, "cycle": i.cycle,
            })).collect::<Vec<_>>(),
            "fault": last.fault.as_ref().map(|f| serde_json::json!({
                "kind": format!("{:?}", f.kind), "signal": f.signal, "blamed": f.blamed,
                "plugin": f.plugin, "stage": f.stage.map(|s| s.to_string()),
                "pc": format!("{:#x}", f.pc), "address": format!("{:#x}", f.addr),
                "mono_ns": f.mono_ns, "cycle": f.cycle, "elapsed_ns": f.elapsed_ns,
            })),
        }),
    }
}

/// What the root itself says (without a daemon): versions, configuration,
/// installed plugins, crash record, quarantine, transactions, logs.
pub fn local_parts(root: &Path, config: &crate::config::HostConfig, program: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    parts.push(Part::json(
        "versions.json",
        &serde_json::json!({
            "program": program,
            "xplugin": env!("CARGO_PKG_VERSION"),
            "abi": format!("{}.{}", xplugin_abi::XPLUGIN_ABI_MAJOR, xplugin_abi::XPLUGIN_ABI_MINOR),
            "host_version": config.host_version,
            "arch": std::env::consts::ARCH,
            "kernel": crate::os::kernel(),
        }),
    ));
    let mut cfg = serde_json::to_value(config).unwrap_or(Value::Null);
    redact(&mut cfg);
    parts.push(Part::json("config.json", &cfg));
    let installed = crate::admin::list(root, xplugin_model::manifest::Side::Controller)
        .ok()
        .and_then(|l| serde_json::to_value(l).ok())
        .unwrap_or(Value::String("unreadable".into()));
    parts.push(Part::json("installed.json", &installed));
    parts.push(Part::json("last-run.json", &journal_json(root)));
    let quarantine = crate::quarantine::Quarantine::load(root)
        .ok()
        .and_then(|q| serde_json::to_value(q).ok())
        .unwrap_or(Value::String("unreadable".into()));
    parts.push(Part::json("quarantine.json", &quarantine));
    let transactions = xplugin_store::Store::existing(root)
        .ok()
        .flatten()
        .and_then(|s| s.transactions().ok())
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or(Value::Array(Vec::new()));
    parts.push(Part::json("transactions.json", &transactions));
    for log in [log_path(root), log_path(root).with_extension("log.1")] {
        if let Ok(bytes) = std::fs::read(&log) {
            let name = format!(
                "log/{}",
                log.file_name()
                    .map_or("log".into(), |n| n.to_string_lossy().into_owned())
            );
            parts.push(Part { name, bytes });
        }
    }
    parts
}

/// Where the daemon keeps its recent log lines.
pub fn log_path(root: &Path) -> PathBuf {
    root.join(xplugin_store::STATE_DIR)
        .join("log")
        .join("controller.log")
}

/// Writes `parts` into the zip archive `out`.
///
/// # Errors
/// The I/O error.
pub fn write(out: &Path, parts: &[Part]) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for p in parts {
        zip.start_file(p.name.as_str(), options)
            .map_err(std::io::Error::other)?;
        zip.write_all(&p.bytes)?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v =
            serde_json::json!({"a": 1, "Password": "x", "nested": [{"api_token": "t", "ok": "y"}]});
        redact(&mut v);
        assert_eq!(v["Password"], "********");
        assert_eq!(v["nested"][0]["api_token"], "********");
        assert_eq!(v["nested"][0]["ok"], "y");
        assert_eq!(v["a"], 1);
    }
}
