//! The admin socket's client side, used by `xplugin-controller` commands
//! (and the Mender update module) when a daemon runs.

use crate::protocol::{read_frame, write_frame, Envelope, FrameError, Request, Response};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nobody listens on the socket.
    #[error("no xplugin-controller daemon answers on {}", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("the daemon on {} did not answer the request", path.display())]
    Exchange {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: FrameError,
    },
}

/// How long a request may take by default (an install verifies the whole
/// package before it answers).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Connects to the daemon at `path`.
///
/// # Errors
/// [`ClientError::NotRunning`].
pub fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
        path: path.to_path_buf(),
        source,
    })
}

/// Sends `request` for `root` (with `fd` passed along, e.g. the package of
/// an install) and waits up to `timeout` for the answer.
///
/// # Errors
/// [`ClientError`].
pub fn request(
    path: &Path,
    root: Option<&Path>,
    request: Request,
    fd: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut stream = connect(path)?;
    let exchange = |source| ClientError::Exchange {
        path: path.to_path_buf(),
        source,
    };
    let envelope = Envelope {
        root: root.map(Path::to_path_buf),
        request,
    };
    write_frame(&mut stream, &envelope, fd).map_err(exchange)?;
    let (response, _) =
        read_frame::<Response>(&mut stream, Instant::now() + timeout).map_err(exchange)?;
    Ok(response)
}

/// Where an admin command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Through the daemon's admin socket at this path.
    Daemon(PathBuf),
    /// No daemon runs for the root: act on the root directly.
    Local,
}

/// A daemon holds the root but its socket does not answer.
#[derive(Debug, thiserror::Error)]
#[error("a daemon (pid {pid}) runs for {} but does not answer on {}", root.display(), socket.display())]
pub struct Unreachable {
    /// The daemon's pid.
    pub pid: u32,
    /// The root it holds.
    pub root: PathBuf,
    /// The socket tried.
    pub socket: PathBuf,
    /// Why the connection failed.
    #[source]
    pub source: std::io::Error,
}

impl xplugin_model::Failure for Unreachable {
    fn problems(&self) -> xplugin_model::Problems {
        xplugin_model::Problems(vec![xplugin_model::Problem::from_error(
            xplugin_model::ProblemCode::DaemonRunning,
            self.root.display().to_string(),
            self,
            "commands that change the root go through the daemon: pass its --admin-socket, or stop it (systemctl stop xplugin-controller) to act on the root directly",
        )])
    }
}

/// Decides where an admin command for `root` goes: through the daemon that
/// holds the root (at `socket`, else where it recorded its socket), or
/// locally when no daemon holds it. A `socket` given that answers is used
/// even when the root's lock says nothing (the daemon checks the root).
///
/// # Errors
/// [`Unreachable`] when a daemon holds the root but does not answer: the
/// command must not write the root behind its back.
pub fn route(root: &Path, socket: Option<&Path>) -> Result<Route, Unreachable> {
    match crate::presence::running(root) {
        Some(p) => {
            let path = socket.map(Path::to_path_buf).unwrap_or(p.admin_socket);
            match connect(&path) {
                Ok(_) => Ok(Route::Daemon(path)),
                Err(ClientError::NotRunning { source, .. }) => Err(Unreachable {
                    pid: p.pid,
                    root: root.to_path_buf(),
                    socket: path,
                    source,
                }),
                Err(ClientError::Exchange { source, .. }) => Err(Unreachable {
                    pid: p.pid,
                    root: root.to_path_buf(),
                    socket: path,
                    source: std::io::Error::other(source.to_string()),
                }),
            }
        }
        None => match socket {
            Some(path) if connect(path).is_ok() => Ok(Route::Daemon(path.to_path_buf())),
            _ => Ok(Route::Local),
        },
    }
}

/// Waits until the daemon at `socket` runs `generation` (it re-executes to
/// apply it, so the socket goes away for a moment), or reports why it will
/// not. Returns the daemon's final status response.
///
/// # Errors
/// A message: the apply did not happen (who held it busy), or `timeout`
/// passed.
pub fn wait_for_generation(
    socket: &Path,
    generation: u64,
    timeout: Duration,
) -> Result<Response, String> {
    let start = Instant::now();
    let mut last_error = String::new();
    while start.elapsed() < timeout {
        match request(socket, None, Request::Status, None, Duration::from_secs(10)) {
            Ok(r) => {
                let g = &r.json["generation"];
                if g["running"].as_u64() == Some(generation) {
                    return Ok(r);
                }
                if let Some(why) = r.json["apply"]["last_failure"].as_str() {
                    if r.json["apply"]["pending"].is_null() {
                        return Err(why.to_string());
                    }
                }
            }
            Err(e) => last_error = xplugin_model::error_chain(&e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "the daemon did not report generation {generation} running within {} s{}",
        timeout.as_secs(),
        if last_error.is_empty() {
            String::new()
        } else {
            format!(" (last: {last_error})")
        }
    ))
}
