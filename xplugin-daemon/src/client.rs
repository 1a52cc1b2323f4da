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
