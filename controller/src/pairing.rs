//! `pair KEY [--role]` and `unpair KEY`: the pendants the controller's link
//! authorises, kept in `ROOT/state/identity/pendants.json` (read at every
//! connection, so a running daemon needs no restart).

use crate::PROGRAM;
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;
use xplugin_cli::{emit, fail};
use xplugin_link::peers::{pair_pendant, unpair_pendant, Role};
use xplugin_link::PublicKey;
use xplugin_model::{Problem, ProblemCode};

#[derive(Serialize)]
struct Paired {
    key: PublicKey,
    fingerprint: String,
    role: Option<Role>,
    previous_role: Option<Role>,
    message: String,
}

impl fmt::Display for Paired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)
    }
}

/// `pair KEY --role ROLE`.
pub fn pair(root: &Path, key: &str, role: &str, json: bool) -> ExitCode {
    let key = match PublicKey::parse(key) {
        Ok(k) => k,
        Err(e) => return fail(PROGRAM, &xplugin_link::LinkError::from(e), json),
    };
    let role = Role::parse(role).unwrap_or_default();
    match pair_pendant(root, key, role) {
        Ok(previous) => {
            let message = match previous {
                Some(p) if p != role => format!(
                    "pendant {} (fingerprint {}): role {p} -> {role}",
                    key,
                    key.fingerprint()
                ),
                Some(_) => format!(
                    "pendant {} (fingerprint {}) was paired already, role {role}",
                    key,
                    key.fingerprint()
                ),
                None => format!(
                    "pendant {} (fingerprint {}) authorised on the pendant link, role {role}",
                    key,
                    key.fingerprint()
                ),
            };
            emit(
                &Paired {
                    key,
                    fingerprint: key.fingerprint(),
                    role: Some(role),
                    previous_role: previous,
                    message,
                },
                json,
                true,
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(PROGRAM, &e, json),
    }
}

/// `unpair KEY`.
pub fn unpair(root: &Path, key: &str, json: bool) -> ExitCode {
    let key = match PublicKey::parse(key) {
        Ok(k) => k,
        Err(e) => return fail(PROGRAM, &xplugin_link::LinkError::from(e), json),
    };
    match unpair_pendant(root, key) {
        Ok(Some(was)) => {
            let message = format!(
                "pendant {key} (fingerprint {}, role {}) unpaired: it is refused from its next connection",
                key.fingerprint(),
                was.role
            );
            emit(
                &Paired {
                    key,
                    fingerprint: key.fingerprint(),
                    role: None,
                    previous_role: Some(was.role),
                    message,
                },
                json,
                true,
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let p = Problem::new(
                ProblemCode::LinkNotPaired,
                format!("pendant key {}", key.fingerprint()),
                format!("pendant {key} is not paired with this controller"),
                "`xplugin-controller identity` and the pendants file list what is paired; check the key",
            );
            fail(PROGRAM, &p, json)
        }
        Err(e) => fail(PROGRAM, &e, json),
    }
}
