//! The pendant link's identity and pairing commands both programs share:
//! `identity [--rotate]` (the public key on the first line, then its
//! fingerprint and what the other side must do), and the output of
//! `pair` / `unpair`.

use crate::{emit, fail};
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;
use xplugin_host::config::HostConfig;
use xplugin_link::identity::{Identity, Made};
use xplugin_link::PublicKey;

/// Which program asks: decides what the other side is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `xplugin-controller`.
    Controller,
    /// `xplugin-client`.
    Pendant,
}

/// What `identity` prints.
#[derive(Debug, Serialize)]
pub struct IdentityReport {
    /// The public key (first line of the text output).
    pub key: PublicKey,
    /// Its fingerprint.
    pub fingerprint: String,
    /// `existing`, `first-use`, `device-changed`, `rotated`.
    pub made: &'static str,
    /// The key it replaced (rotated, or remade on a cloned disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// What the other side must do, if anything.
    pub next: Vec<String>,
}

impl fmt::Display for IdentityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.key)?;
        writeln!(f, "fingerprint {}", self.fingerprint)?;
        for line in &self.next {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

fn report(host: Host, id: &Identity, made: &Made) -> IdentityReport {
    let key = id.public;
    let pair_here = match host {
        Host::Controller => format!(
            "each pendant pairs with this controller by this key: `xplugin-client pair ADDR:PORT {key}`"
        ),
        Host::Pendant => format!(
            "the controller authorises this pendant by this key: `xplugin-controller pair {key}` (--role status for a pendant that may only look)"
        ),
    };
    let (made_name, previous, mut next) = match made {
        Made::Existing => ("existing", None, Vec::new()),
        Made::FirstUse => ("first-use", None, vec![pair_here.clone()]),
        Made::DeviceChanged { was, now } => (
            "device-changed",
            None,
            vec![format!(
                "a new identity was made: the stored one belongs to device {was}, this is {now} (a copied disk image)"
            )],
        ),
        Made::Rotated { previous } => (
            "rotated",
            Some(previous.to_string()),
            vec![format!(
                "the previous key {previous} (fingerprint {}) no longer works",
                previous.fingerprint()
            )],
        ),
    };
    match (host, made) {
        (_, Made::Existing | Made::FirstUse) => {}
        (Host::Controller, _) => next.push(format!(
            "every paired pendant must pair again: `xplugin-client pair ADDR:PORT {key}`"
        )),
        (Host::Pendant, Made::Rotated { previous }) => next.push(format!(
            "on the controller: `xplugin-controller unpair {previous}` and `xplugin-controller pair {key}`"
        )),
        (Host::Pendant, _) => next.push(pair_here),
    }
    IdentityReport {
        key,
        fingerprint: key.fingerprint(),
        made: made_name,
        previous,
        next,
    }
}

/// `identity [--rotate]` for install root `root`.
pub fn identity(
    program: &str,
    host: Host,
    root: &Path,
    config: &HostConfig,
    rotate: bool,
    json: bool,
) -> ExitCode {
    let device = xplugin_host::device::device_identity(config).ok();
    let result = if rotate {
        Identity::rotate(root, device.as_deref())
    } else {
        Identity::load_or_create(root, device.as_deref())
    };
    match result {
        Ok((id, made)) => {
            emit(&report(host, &id, &made), json, true);
            ExitCode::SUCCESS
        }
        Err(e) => fail(program, &e, json),
    }
}

/// This host's public key, made on first use (for `pair`'s output).
///
/// # Errors
/// [`xplugin_link::LinkError`].
pub fn own_key(root: &Path, config: &HostConfig) -> Result<PublicKey, xplugin_link::LinkError> {
    let device = xplugin_host::device::device_identity(config).ok();
    Identity::load_or_create(root, device.as_deref()).map(|(id, _)| id.public)
}
