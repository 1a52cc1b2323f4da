//! The protocol's messages (docs/link.md is their reference): JSON objects
//! tagged by `"type"`, sent as [`KIND_MESSAGE`](crate::noise::KIND_MESSAGE)
//! pieces inside the Noise session. Unknown fields are ignored, so a newer
//! peer may add fields within the same protocol version; a new message or
//! a changed meaning takes a new version, agreed in [`Hello`].

use crate::peers::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use xplugin_model::{Problem, ProblemCode};

/// Oldest protocol version this release speaks.
pub const PROTOCOL_MIN: u32 = 1;
/// Newest protocol version this release speaks.
pub const PROTOCOL_MAX: u32 = 1;
/// Clock difference between pendant and controller beyond which hello
/// reports a skew (licenses are checked against each computer's own clock,
/// so a skew is reported, not refused).
pub const CLOCK_SKEW_LIMIT_S: u64 = 300;

/// A problem on the wire: the fields of [`Problem`] with the code as text,
/// so a problem of a newer release (an unknown code) still travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireProblem {
    /// `area.what`.
    pub code: String,
    /// `error` or `warning` as the sender's table says.
    #[serde(default)]
    pub severity: Option<String>,
    /// The plugin or entry concerned.
    #[serde(default)]
    pub subject: String,
    /// The field concerned.
    #[serde(default)]
    pub field: Option<String>,
    /// What is wrong.
    #[serde(default)]
    pub message: String,
    /// What to do.
    #[serde(default)]
    pub hint: String,
}

impl From<&Problem> for WireProblem {
    fn from(p: &Problem) -> Self {
        WireProblem {
            code: p.code.as_str().to_string(),
            severity: Some(if p.is_error() { "error" } else { "warning" }.into()),
            subject: p.subject.clone(),
            field: p.field.clone(),
            message: p.message.clone(),
            hint: p.hint.clone(),
        }
    }
}

impl WireProblem {
    /// Back to a [`Problem`]; an unknown code becomes
    /// [`ProblemCode::LinkRemoteProblem`] (or its warning twin) with the
    /// sender's code in the message.
    pub fn to_problem(&self) -> Problem {
        let (code, message) = match ProblemCode::from_code(&self.code) {
            Some(c) => (c, self.message.clone()),
            None if self.severity.as_deref() == Some("warning") => (
                ProblemCode::LinkRemoteWarning,
                format!("[{}] {}", self.code, self.message),
            ),
            None => (
                ProblemCode::LinkRemoteProblem,
                format!("[{}] {}", self.code, self.message),
            ),
        };
        let p = Problem::new(code, self.subject.clone(), message, self.hint.clone());
        match &self.field {
            Some(f) => p.with_field(f.clone()),
            None => p,
        }
    }
}

/// Wire form of a list of problems.
pub fn wire(problems: &[Problem]) -> Vec<WireProblem> {
    problems.iter().map(WireProblem::from).collect()
}

/// Problems from their wire form.
pub fn unwire(problems: &[WireProblem]) -> Vec<Problem> {
    problems.iter().map(WireProblem::to_problem).collect()
}

/// What each side says about itself first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Oldest protocol version the sender speaks.
    pub protocol_min: u32,
    /// Newest protocol version the sender speaks.
    pub protocol_max: u32,
    /// In the controller's answer: the version agreed on.
    #[serde(default)]
    pub protocol: Option<u32>,
    /// `xplugin-client` or `xplugin-controller`.
    #[serde(default)]
    pub program: String,
    /// The sender's release (its package version).
    #[serde(default)]
    pub release: String,
    /// The sender's CPU architecture (`aarch64`, `x86_64`, ...).
    #[serde(default)]
    pub arch: String,
    /// The plugin ABI version the sender's host implements (`1.1`).
    #[serde(default)]
    pub abi: Option<String>,
    /// The host's HMI or controller version.
    #[serde(default)]
    pub host_version: Option<String>,
    /// The sender's device id (what its licenses are bound to).
    #[serde(default)]
    pub device_id: Option<String>,
    /// The sender's clock (unix milliseconds).
    #[serde(default)]
    pub clock_unix_ms: u64,
}

impl Hello {
    /// What this program says about itself: this release's protocol range,
    /// its release, CPU and ABI, the host version and device id given, and
    /// the clock now.
    pub fn this_host(
        program: &str,
        host_version: Option<String>,
        device_id: Option<String>,
    ) -> Hello {
        Hello {
            protocol_min: PROTOCOL_MIN,
            protocol_max: PROTOCOL_MAX,
            protocol: None,
            program: program.to_string(),
            release: env!("CARGO_PKG_VERSION").to_string(),
            arch: std::env::consts::ARCH.to_string(),
            abi: Some(format!(
                "{}.{}",
                xplugin_abi::XPLUGIN_ABI_MAJOR,
                xplugin_abi::XPLUGIN_ABI_MINOR
            )),
            host_version,
            device_id,
            clock_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// The version both speak: the newest in both ranges.
    pub fn agree(&self, other: &Hello) -> Option<u32> {
        let low = self.protocol_min.max(other.protocol_min);
        let high = self.protocol_max.min(other.protocol_max);
        (low <= high).then_some(high)
    }

    /// `1..1`, for messages.
    pub fn range(&self) -> String {
        format!("{}..{}", self.protocol_min, self.protocol_max)
    }
}

/// One plugin in the controller's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePlugin {
    /// Name.
    pub name: String,
    /// Version.
    #[serde(default)]
    pub version: Option<String>,
    /// `running`, `failed`, `disabled`, `quarantined`, ...
    pub state: String,
    /// Why it is not running.
    #[serde(default)]
    pub reason: Option<String>,
    /// SHA-256 of its library as installed.
    #[serde(default)]
    pub library_sha256: Option<String>,
}

/// An open or decided install transaction, as the controller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTransaction {
    /// Its id.
    pub id: String,
    /// `preparing`, `prepared`, `committed`, `aborted`.
    pub state: String,
    /// Who holds it.
    #[serde(default)]
    pub holder: String,
    /// When an open one is aborted if undecided (controller's clock).
    #[serde(default)]
    pub expires_unix: u64,
}

/// The controller's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerStatus {
    /// The generation whose plugins run.
    #[serde(default)]
    pub running: Option<u64>,
    /// The generation `current` names.
    #[serde(default)]
    pub committed: Option<u64>,
    /// The transaction whose commit made the committed generation.
    #[serde(default)]
    pub committed_transaction: Option<String>,
    /// The open install transaction.
    #[serde(default)]
    pub prepared: Option<RemoteTransaction>,
    /// The controller's version.
    #[serde(default)]
    pub host_version: Option<String>,
    /// Every plugin of the running generation.
    #[serde(default)]
    pub plugins: Vec<RemotePlugin>,
    /// The apply policy and an apply in progress or failed.
    #[serde(default)]
    pub apply: serde_json::Value,
    /// The daemon's own status text (what `xplugin-controller status` prints).
    #[serde(default)]
    pub text: String,
}

/// The controller's answer about a transaction (prepare, commit, abort,
/// outcome, lookup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionReply {
    /// The transaction id.
    pub transaction: String,
    /// `prepared`, `committed`, `aborted`, ...
    pub state: String,
    /// Who holds it.
    #[serde(default)]
    pub holder: String,
    /// The generation it was prepared against.
    #[serde(default)]
    pub base_generation: Option<u64>,
    /// The generation its commit made current.
    #[serde(default)]
    pub new_generation: Option<u64>,
    /// When an open transaction is aborted if undecided (controller's clock).
    #[serde(default)]
    pub expires_unix: u64,
    /// Why it was aborted.
    #[serde(default)]
    pub reason: Option<String>,
    /// Every problem the controller found (prepare: the same list an import
    /// prints).
    #[serde(default)]
    pub problems: Vec<WireProblem>,
    /// The controller plugins (name -> version) that run once it is
    /// committed and applied: what the pendant checks `ctrlDepend` against.
    #[serde(default)]
    pub prepared_set: BTreeMap<String, String>,
    /// The controller's report in words.
    #[serde(default)]
    pub text: String,
    /// The controller's report as its `--json` document.
    #[serde(default)]
    pub report: serde_json::Value,
    /// What applying after a commit said (`scheduled`, `next-boot`, ...).
    #[serde(default)]
    pub apply: Option<serde_json::Value>,
}

/// A controller's answer to `config-show` or `config-set`: what
/// `xplugin-controller config show|set` prints, and its `--json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigReply {
    /// The answer in words.
    pub text: String,
    /// The answer as the admin command's `--json` document.
    pub report: serde_json::Value,
}

/// Every message of protocol version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Message {
    /// Controller -> pendant, first message after the handshake: this
    /// pendant is authorised, with this role.
    Welcome {
        /// What the pendant may do.
        role: Role,
    },
    /// Either side: the connection is refused (after the handshake: an
    /// unknown pendant key; after hello: no common version; later: a
    /// request this role may not make). The connection is closed after it.
    Refused {
        /// Why, and what to do.
        problem: WireProblem,
    },
    /// Both sides, once: who they are.
    Hello(Hello),
    /// Pendant: the controller's status.
    Status,
    /// Controller: its status.
    StatusReport(ControllerStatus),
    /// Pendant: an upload of `size` bytes whose SHA-256 is `sha256` starts
    /// (or resumes).
    UploadBegin {
        /// SHA-256, 64 hex digits: the upload's address.
        sha256: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Controller: send from `offset` on (what it has already; `size`
    /// means it has it all).
    UploadAt {
        /// Bytes already held.
        offset: u64,
    },
    /// Pendant: every byte was sent.
    UploadEnd {
        /// The upload's address.
        sha256: String,
    },
    /// Controller: the upload is complete and its bytes have that SHA-256.
    Uploaded {
        /// The upload's address.
        sha256: String,
        /// Its size.
        size: u64,
    },
    /// Pendant: verify and prepare the uploaded controller part.
    Prepare {
        /// The upload to install.
        sha256: String,
        /// What the package is called in messages.
        label: String,
        /// Reinstall plugins whose version is installed.
        #[serde(default)]
        force: bool,
        /// Accept older versions.
        #[serde(default)]
        allow_downgrade: bool,
        /// The pendant's id for this request: a pendant that lost the
        /// answer finds the transaction by it ([`Message::Lookup`]).
        request: String,
    },
    /// Pendant: commit a prepared transaction, then apply by `apply`
    /// (`now`, `when-idle`, `next-boot`; absent: the controller's policy).
    Commit {
        /// Transaction id.
        transaction: String,
        /// Apply policy.
        #[serde(default)]
        apply: Option<String>,
    },
    /// Pendant: abort an open transaction.
    Abort {
        /// Transaction id.
        transaction: String,
        /// Why (recorded).
        #[serde(default)]
        reason: String,
    },
    /// Pendant: what became of a transaction.
    Outcome {
        /// Transaction id.
        transaction: String,
    },
    /// Pendant: the transaction prepared for request `request`, if any.
    Lookup {
        /// The request id given to [`Message::Prepare`].
        request: String,
    },
    /// Controller: about a transaction.
    Transaction(TransactionReply),
    /// Pendant: a controller plugin's configuration items and stored values
    /// (passwords masked).
    ConfigShow {
        /// The controller plugin.
        plugin: String,
    },
    /// Pendant: change configuration items of a controller plugin
    /// (`KEY=VALUE` each). The controller parses and validates them against
    /// its own schema, offers them to the running plugin and stores what it
    /// took, exactly as `xplugin-controller config set` does.
    ConfigSet {
        /// The controller plugin.
        plugin: String,
        /// The changes.
        assignments: Vec<String>,
    },
    /// Controller: the answer to a configuration request.
    Config(ConfigReply),
    /// Pendant: open the plugin message bridge on this connection, for
    /// these client plugins (docs/link.md, "Plugin messages"). After the
    /// controller's `bridge-opened` the connection carries bridge frames
    /// only.
    BridgeOpen {
        /// Every running client plugin with a `bridge` declaration.
        plugins: Vec<crate::bridge::BridgeDecl>,
    },
    /// Controller: the bridge is open with these routes.
    BridgeOpened(crate::bridge::BridgeOpened),
    /// Controller: the request failed; nothing was done beyond what the
    /// problems say.
    Error {
        /// Every problem.
        problems: Vec<WireProblem>,
    },
}

impl Message {
    /// The message's type name (`upload-begin`, ...), for logs and refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Welcome { .. } => "welcome",
            Message::Refused { .. } => "refused",
            Message::Hello(_) => "hello",
            Message::Status => "status",
            Message::StatusReport(_) => "status-report",
            Message::UploadBegin { .. } => "upload-begin",
            Message::UploadAt { .. } => "upload-at",
            Message::UploadEnd { .. } => "upload-end",
            Message::Uploaded { .. } => "uploaded",
            Message::Prepare { .. } => "prepare",
            Message::Commit { .. } => "commit",
            Message::Abort { .. } => "abort",
            Message::Outcome { .. } => "outcome",
            Message::Lookup { .. } => "lookup",
            Message::Transaction(_) => "transaction",
            Message::ConfigShow { .. } => "config-show",
            Message::ConfigSet { .. } => "config-set",
            Message::Config(_) => "config",
            Message::BridgeOpen { .. } => "bridge-open",
            Message::BridgeOpened(_) => "bridge-opened",
            Message::Error { .. } => "error",
        }
    }

    /// True for requests that change something on the controller (a
    /// `status` pendant may not make them).
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Message::UploadBegin { .. }
                | Message::UploadEnd { .. }
                | Message::Prepare { .. }
                | Message::Commit { .. }
                | Message::Abort { .. }
                | Message::ConfigSet { .. }
                | Message::BridgeOpen { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_versions_agree_or_not() {
        let m: Message = serde_json::from_str(
            r#"{"type":"hello","protocol_min":1,"protocol_max":3,"program":"xplugin-client","future_field":{"x":1}}"#,
        )
        .unwrap();
        let Message::Hello(theirs) = m else { panic!() };
        let ours = Hello {
            protocol_min: 1,
            protocol_max: 1,
            protocol: None,
            program: String::new(),
            release: String::new(),
            arch: String::new(),
            abi: None,
            host_version: None,
            device_id: None,
            clock_unix_ms: 0,
        };
        assert_eq!(ours.agree(&theirs), Some(1));
        let old = Hello {
            protocol_min: 0,
            protocol_max: 0,
            ..ours.clone()
        };
        assert_eq!(ours.agree(&old), None);
    }

    #[test]
    fn unknown_problem_codes_travel() {
        let w = WireProblem {
            code: "future.thing".into(),
            severity: Some("error".into()),
            subject: "x".into(),
            field: None,
            message: "m".into(),
            hint: "h".into(),
        };
        let p = w.to_problem();
        assert_eq!(p.code, ProblemCode::LinkRemoteProblem);
        assert!(p.message.contains("[future.thing]"));
        let back = WireProblem::from(&Problem::new(ProblemCode::GraphCycle, "a", "b", "c"));
        assert_eq!(back.to_problem().code, ProblemCode::GraphCycle);
    }
}
