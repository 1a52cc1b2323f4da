//! What the command-line programs share: output in text or `--json`, exit
//! codes, and resolving the host version from flags and configuration.

use crate::config::{HostConfig, HostSide};
use serde::Serialize;
use std::fmt::Display;
use std::process::ExitCode;
use xplugin_model::Version;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the request was refused or failed (bad package, locked root...).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: boot/run went on, but some plugins did not load.
pub const EXIT_PARTIAL: u8 = 2;
/// Exit status: wrong usage (clap's own).
pub const EXIT_USAGE: u8 = 64;

/// Prints `value` as one JSON document (with `"ok"`) or as text.
pub fn emit<T: Serialize + Display>(value: &T, json: bool, ok: bool) {
    if json {
        let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("ok".into(), serde_json::Value::Bool(ok));
        } else {
            v = serde_json::json!({ "ok": ok, "result": v });
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if ok {
        print!("{value}");
    } else {
        eprint!("{value}");
    }
}

/// Reports an error (stderr text, or a JSON document on stdout) and returns
/// the exit code.
pub fn fail(program: &str, error: &dyn Display, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "ok": false, "error": error.to_string() })
            )
            .unwrap_or_default()
        );
    }
    eprintln!("{program}: error: {error}");
    ExitCode::from(EXIT_REFUSED)
}

/// The host version: the flag wins over `host_version` in the configuration.
///
/// # Errors
/// A message naming the flag and the configuration key when the version is
/// missing or malformed.
pub fn host_version(
    flag: Option<&str>,
    config: &HostConfig,
    side: HostSide,
) -> Result<Version, String> {
    let (text, from) = match (flag, &config.host_version) {
        (Some(v), _) => (v.to_string(), side.version_flag().to_string()),
        (None, Some(v)) => (v.clone(), "host_version in the configuration".to_string()),
        (None, None) => {
            return Err(format!(
                "this host's {} is unknown: pass {} V or set \"host_version\" in {}",
                side.version_name(),
                side.version_flag(),
                side.default_config_path().display()
            ))
        }
    };
    text.parse::<Version>().map_err(|e| {
        format!(
            "{} from {from} is not a valid version: {e}",
            side.version_name()
        )
    })
}

/// A plain message that implements Display + Serialize for [`emit`].
#[derive(Serialize)]
pub struct Message {
    /// The text.
    pub message: String,
}

impl Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.message)
    }
}
