//! Why a link operation failed, as problems a support engineer can act on:
//! which peer, which key was seen, and how to pair or what to retry.

use crate::frame::FrameError;
use crate::key::PublicKey;
use crate::noise::{HandshakeError, SessionError};
use std::path::PathBuf;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// A link failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// This host's identity or peer list is unusable.
    #[error("link identity file {}: {why}", path.display())]
    Identity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// This operation is not available on this operating system (the
    /// Windows pendant build); nothing was done.
    #[error("{what} is not available on this operating system: {why}")]
    Unsupported {
        /// What was refused.
        what: String,
        /// Why.
        why: String,
    },
    /// A key given is not a key.
    #[error(transparent)]
    BadKey(#[from] crate::key::KeyParseError),
    /// An address given is not `ADDR:PORT`.
    #[error("\"{address}\" is not an address: {why}")]
    BadAddress {
        /// The text.
        address: String,
        /// What is wrong.
        why: String,
    },
    /// The pendant has no key pinned for this address.
    #[error("no controller is paired at {address}")]
    NotPaired {
        /// The address.
        address: String,
    },
    /// Connecting failed.
    #[error("cannot connect to the controller at {address}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The handshake failed.
    #[error("the handshake with {peer} failed")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// Why.
        #[source]
        source: HandshakeError,
    },
    /// The connection failed or a frame was refused after the handshake.
    #[error("the link to {peer} failed while {during}")]
    Session {
        /// The peer's address.
        peer: String,
        /// What was going on.
        during: String,
        /// Why.
        #[source]
        source: SessionError,
    },
    /// The peer refused (an unknown key, a role, no common version).
    #[error("{peer} refused: {}", .problem.message)]
    Refused {
        /// The peer's address.
        peer: String,
        /// Its refusal.
        problem: Box<Problem>,
    },
    /// The peer sent something the protocol does not allow here.
    #[error("{peer} broke the link protocol: {why}")]
    Protocol {
        /// The peer's address.
        peer: String,
        /// What it sent.
        why: String,
    },
    /// The controller answered a request with problems.
    #[error("the controller at {peer} refused the request: {} problem(s)", .problems.len())]
    Remote {
        /// The peer's address.
        peer: String,
        /// Its problems.
        problems: Vec<Problem>,
    },
}

impl LinkError {
    /// A session failure while `during`.
    pub fn session(peer: &str, during: &str, source: impl Into<SessionError>) -> LinkError {
        LinkError::Session {
            peer: peer.to_string(),
            during: during.to_string(),
            source: source.into(),
        }
    }

    /// True when the connection was lost or timed out (as opposed to a
    /// refusal): worth reconnecting.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            LinkError::Connect { .. } => true,
            LinkError::Session { source, .. } => matches!(
                source,
                SessionError::Frame(
                    FrameError::Closed
                        | FrameError::Truncated { .. }
                        | FrameError::Timeout { .. }
                        | FrameError::Io(_)
                )
            ),
            LinkError::Handshake { source, .. } => matches!(
                source,
                HandshakeError::Frame(
                    FrameError::Closed
                        | FrameError::Truncated { .. }
                        | FrameError::Timeout { .. }
                        | FrameError::Io(_)
                )
            ),
            _ => false,
        }
    }
}

fn frame_code(e: &FrameError) -> ProblemCode {
    match e {
        FrameError::Timeout { .. } => ProblemCode::LinkTimeout,
        FrameError::Closed | FrameError::Io(_) => ProblemCode::LinkUnreachable,
        FrameError::TooLarge(_) | FrameError::Truncated { .. } => ProblemCode::LinkBadFrame,
    }
}

impl Failure for LinkError {
    fn problems(&self) -> Problems {
        let one = |code, subject: String, hint: String| {
            Problems(vec![Problem::from_error(code, subject, self, hint)])
        };
        match self {
            LinkError::Identity { path, .. } => one(
                ProblemCode::LinkIdentity,
                path.display().to_string(),
                ProblemCode::LinkIdentity.what_to_do().into(),
            ),
            LinkError::Unsupported { what, .. } => one(
                ProblemCode::HostUnsupportedPlatform,
                what.clone(),
                ProblemCode::HostUnsupportedPlatform.what_to_do().into(),
            ),
            LinkError::BadKey(_) => one(
                ProblemCode::LinkBadKey,
                "command line".into(),
                "give the 64 hex digits on the first line `identity` prints on the other computer".into(),
            ),
            LinkError::BadAddress { address, .. } => one(
                ProblemCode::UsageInvalidArgument,
                address.clone(),
                "give ADDR:PORT, e.g. 192.168.0.2:7411 or [fe80::1]:7411".into(),
            ),
            LinkError::NotPaired { address } => one(
                ProblemCode::LinkNotPaired,
                address.clone(),
                format!("on the controller run `xplugin-controller identity`, then here `xplugin-client pair {address} KEY` with the key it prints"),
            ),
            LinkError::Connect { address, .. } => one(
                ProblemCode::LinkUnreachable,
                address.clone(),
                "check the address and that the controller's daemon runs with `listen` set (xplugin-controller run --listen ADDR:PORT)".into(),
            ),
            LinkError::Handshake { peer, source } => match source {
                HandshakeError::WrongKey { seen, .. } => one(
                    ProblemCode::LinkControllerKeyMismatch,
                    peer.clone(),
                    format!("compare with `xplugin-controller identity` on the controller; if its key changed on purpose, pair again: `xplugin-client pair {peer} {seen}`"),
                ),
                HandshakeError::Frame(f) => one(
                    frame_code(f),
                    peer.clone(),
                    "check that the address is the controller's pendant link and retry".into(),
                ),
                HandshakeError::Noise(_) => one(
                    ProblemCode::LinkHandshakeFailed,
                    peer.clone(),
                    ProblemCode::LinkHandshakeFailed.what_to_do().into(),
                ),
            },
            LinkError::Session { peer, source, .. } => {
                let code = match source {
                    SessionError::Frame(f) => frame_code(f),
                    SessionError::Decrypt | SessionError::Malformed(_) => ProblemCode::LinkBadFrame,
                };
                one(code, peer.clone(), code.what_to_do().into())
            }
            LinkError::Refused { problem, .. } => Problems(vec![(**problem).clone()]),
            LinkError::Protocol { peer, .. } => one(
                ProblemCode::LinkBadFrame,
                peer.clone(),
                "use pendant and controller programs of compatible releases".into(),
            ),
            LinkError::Remote { problems, .. } => Problems(problems.clone()),
        }
    }
}

/// The refusal a controller sends an unknown pendant key.
pub fn not_authorised(controller: &PublicKey, pendant: &PublicKey) -> Problem {
    Problem::new(
        ProblemCode::LinkPendantNotAuthorised,
        format!("pendant key {}", pendant.fingerprint()),
        format!(
            "the controller (key fingerprint {}) does not know this pendant's key {pendant} (fingerprint {})",
            controller.fingerprint(),
            pendant.fingerprint()
        ),
        format!("on the controller: `xplugin-controller pair {pendant}` (add --role status for a pendant that may only look)"),
    )
}
