//! The admin socket's protocol: one request and one response per
//! connection, each a frame of a 4-byte big-endian length and that many
//! bytes of JSON. A request may carry one file descriptor (SCM_RIGHTS) with
//! its length prefix: `install` passes the package that way, so the daemon
//! reads a file the caller could open, without needing permission to open it
//! by name.
//!
//! Responses carry both renderings of their result: `text` (what the
//! command prints) and `json` (its `--json` document), so every client
//! prints exactly what a local run would.
//!
//! Limits: a frame is at most [`MAX_FRAME`] bytes; reading a request must
//! finish within [`READ_DEADLINE`] (a peer that sends one byte a minute is
//! dropped); writes time out after [`WRITE_DEADLINE`].

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Largest frame accepted, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Time allowed to read a whole request.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Time allowed to write a whole frame.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

pub use xplugin_host::config::ApplyPolicy;

/// What a caller asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The running daemon's status.
    Status,
    /// The installed plugins.
    List,
    /// Enable an installed plugin (a new generation, applied by policy).
    Enable {
        /// Plugin name.
        name: String,
        /// Apply policy (`None`: the configured one).
        apply: Option<ApplyPolicy>,
    },
    /// Disable an installed plugin.
    Disable {
        /// Plugin name.
        name: String,
        /// Apply policy.
        apply: Option<ApplyPolicy>,
    },
    /// Remove an installed plugin.
    Remove {
        /// Plugin name.
        name: String,
        /// Also its dependents.
        cascade: bool,
        /// Apply policy.
        apply: Option<ApplyPolicy>,
    },
    /// Restore the previous generation.
    Rollback {
        /// Apply policy.
        apply: Option<ApplyPolicy>,
    },
    /// Install the package passed as the request's file descriptor.
    Install {
        /// Only prepare (print the transaction id); decide with `commit`.
        prepare: bool,
        /// Reinstall plugins whose version is installed.
        force: bool,
        /// Accept older versions.
        allow_downgrade: bool,
        /// The package's name for messages.
        label: String,
        /// Apply policy after a commit.
        apply: Option<ApplyPolicy>,
    },
    /// Commit a prepared transaction.
    Commit {
        /// Transaction id.
        id: String,
        /// Apply policy.
        apply: Option<ApplyPolicy>,
    },
    /// Abort an open transaction.
    Abort {
        /// Transaction id.
        id: String,
    },
    /// The outcome of a transaction.
    Outcome {
        /// Transaction id.
        id: String,
    },
    /// A plugin's configuration items and stored values (passwords masked).
    ConfigShow {
        /// Plugin name.
        name: String,
    },
    /// Change configuration items of a plugin (`KEY=VALUE` each, parsed
    /// per the item's type by the daemon).
    ConfigSet {
        /// Plugin name.
        name: String,
        /// The changes.
        assignments: Vec<String>,
    },
    /// The quarantined plugins.
    QuarantineList,
    /// Lifts a quarantine (`name`), or every quarantine and safe mode (`all`).
    QuarantineClear {
        /// The plugin.
        name: Option<String>,
        /// Everything, safe mode included.
        all: bool,
    },
}

impl Request {
    /// True for requests that only read.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::List
                | Request::Outcome { .. }
                | Request::ConfigShow { .. }
                | Request::QuarantineList
        )
    }

    /// The name of the operation (`install`, ...), for logs and refusals.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::List => "list",
            Request::Enable { .. } => "enable",
            Request::Disable { .. } => "disable",
            Request::Remove { .. } => "remove",
            Request::Rollback { .. } => "rollback",
            Request::Install { .. } => "install",
            Request::Commit { .. } => "commit",
            Request::Abort { .. } => "abort",
            Request::Outcome { .. } => "outcome",
            Request::ConfigShow { .. } => "config-show",
            Request::ConfigSet { .. } => "config-set",
            Request::QuarantineList => "quarantine list",
            Request::QuarantineClear { .. } => "quarantine clear",
        }
    }
}

/// A request with the install root the caller means (the daemon refuses a
/// request for another root instead of acting on the wrong robot state).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The root the caller means, if it gave one.
    pub root: Option<PathBuf>,
    /// The request.
    pub request: Request,
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// True on success.
    pub ok: bool,
    /// The exit status the command should end with.
    pub exit: u8,
    /// What the command prints (stdout when ok, stderr otherwise).
    pub text: String,
    /// The command's `--json` document.
    pub json: serde_json::Value,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The socket failed or the deadline passed.
    #[error("the admin socket connection failed")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame over [`MAX_FRAME`].
    #[error("a frame of {0} bytes was announced, the limit is {MAX_FRAME}")]
    TooLarge(usize),
    /// The peer closed the connection before the frame was complete.
    #[error("the peer closed the connection in the middle of a frame")]
    Truncated,
    /// The peer closed the connection before sending anything (a probe
    /// whether a daemon answers).
    #[error("the peer closed the connection without a request")]
    Closed,
    /// The frame is not the JSON expected.
    #[error("the frame is not a valid message")]
    Json(#[from] serde_json::Error),
}

fn read_exact_by(
    stream: &mut UnixStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), FrameError> {
    let mut done = 0;
    while done < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer did not send the whole message in time",
            )));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[done..]) {
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Reads the 4-byte length prefix, taking a passed file descriptor with it.
fn read_prefix(
    stream: &mut UnixStream,
    deadline: Instant,
) -> Result<([u8; 4], Option<OwnedFd>), FrameError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut prefix = [0u8; 4];
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (received, fd) = {
        let mut iov = [std::io::IoSliceMut::new(&mut prefix)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| FrameError::Io(e.into()))?;
        let mut fd = None;
        for c in msg.cmsgs().map_err(|e| FrameError::Io(e.into()))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for (i, raw) in fds.into_iter().enumerate() {
                    // SAFETY: the kernel just installed `raw` in this
                    // process for us (SCM_RIGHTS); nothing else owns it.
                    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                    // Only the first one is used; the rest are closed.
                    if i == 0 {
                        fd = Some(owned);
                    }
                }
            }
        }
        (msg.bytes, fd)
    };
    if received == 0 {
        return Err(FrameError::Closed);
    }
    if received < 4 {
        read_exact_by(stream, &mut prefix[received..], deadline)?;
    }
    Ok((prefix, fd))
}

/// Reads one frame (and a passed descriptor) before `deadline`.
///
/// # Errors
/// [`FrameError`]: deadline, oversized or truncated frame, bad JSON.
pub fn read_frame<T: serde::de::DeserializeOwned>(
    stream: &mut UnixStream,
    deadline: Instant,
) -> Result<(T, Option<OwnedFd>), FrameError> {
    let (prefix, fd) = read_prefix(stream, deadline)?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    read_exact_by(stream, &mut body, deadline)?;
    Ok((serde_json::from_slice(&body)?, fd))
}

/// Writes one frame, passing `fd` with its length prefix.
///
/// # Errors
/// [`FrameError::Io`] when the socket fails or times out.
pub fn write_frame<T: Serialize>(
    stream: &mut UnixStream,
    value: &T,
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), FrameError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    stream.set_write_timeout(Some(WRITE_DEADLINE))?;
    let prefix = (body.len() as u32).to_be_bytes();
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = raw
        .as_ref()
        .map(|r| ControlMessage::ScmRights(r))
        .into_iter()
        .collect();
    let iov = [std::io::IoSlice::new(&prefix)];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
        .map_err(|e| FrameError::Io(e.into()))?;
    if sent < prefix.len() {
        stream.write_all(&prefix[sent..])?;
    }
    stream.write_all(&body)?;
    stream.flush()?;
    Ok(())
}
