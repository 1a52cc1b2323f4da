//! The admin socket's server: a Unix stream socket (mode 0660, group
//! `admin_group` when configured) served by one accepting thread and at most
//! [`MAX_CONNECTIONS`] connection threads, each with a small explicit stack.
//! Every request is read within [`READ_DEADLINE`](crate::protocol::READ_DEADLINE),
//! its caller checked ([`crate::access`]) before it is parsed further, and
//! answered once. None of this runs on the cycle thread, and nothing here
//! waits for it.

use crate::access::{Access, Peer};
use crate::protocol::{read_frame, write_frame, Envelope, Response, READ_DEADLINE};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4;
/// Stack of the accepting and the connection threads.
pub const STACK_SIZE: usize = 256 * 1024;

/// What answers requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer` (already allowed by the access rule),
    /// with the file descriptor it passed, if any.
    fn handle(&self, envelope: Envelope, fd: Option<OwnedFd>, peer: &Peer) -> Response;
}

/// The running server. Dropping it stops accepting and removes the socket.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// An error response.
pub fn refusal(
    code: xplugin_model::ProblemCode,
    subject: &str,
    message: &str,
    hint: &str,
) -> Response {
    let problems = xplugin_model::Problems(vec![xplugin_model::Problem::new(
        code, subject, message, hint,
    )]);
    Response {
        ok: false,
        exit: 1,
        text: format!(
            "{}\n",
            xplugin_model::failure_text("xplugin-controller", &problems)
        ),
        json: xplugin_model::failure_json(&problems),
    }
}

impl Server {
    /// Binds `path` (replacing a stale socket nobody listens on) and starts
    /// serving with `handler` under `access`.
    ///
    /// # Errors
    /// The system's error; [`std::io::ErrorKind::AddrInUse`] when a live
    /// daemon already listens there.
    pub fn start(
        path: &Path,
        access: Access,
        group: Option<u32>,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Server> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)?;
            }
        }
        if std::fs::symlink_metadata(path).is_ok() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("a daemon already answers on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        if let Some(gid) = group {
            // Members of admin_group may connect to read the status.
            if let Err(e) = nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))) {
                log::warn!(
                    "admin socket {}: cannot give it to gid {gid}: {e}",
                    path.display()
                );
            }
        }
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let access = Arc::new(access);
        let thread = std::thread::Builder::new()
            .name("xplugin-admin".into())
            .stack_size(STACK_SIZE)
            .spawn(move || accept_loop(listener, stop2, access, handler))?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, waits for the accepting thread and removes the
    /// socket. Connections being served finish on their own threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    access: Arc<Access>,
    handler: Arc<dyn Handler>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                active.fetch_add(1, Ordering::SeqCst);
                let (active2, access, handler) = (active.clone(), access.clone(), handler.clone());
                let spawned = std::thread::Builder::new()
                    .name("xplugin-admin-conn".into())
                    .stack_size(STACK_SIZE)
                    .spawn(move || {
                        serve(stream, &access, &*handler);
                        active2.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    active.fetch_sub(1, Ordering::SeqCst);
                    log::warn!("admin socket: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("admin socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve(mut stream: UnixStream, access: &Access, handler: &dyn Handler) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let peer = match Peer::of(&stream) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("admin socket: cannot read the caller's credentials: {e}");
            return;
        }
    };
    let response = match read_frame::<Envelope>(&mut stream, Instant::now() + READ_DEADLINE) {
        // Someone checked whether a daemon answers: nothing to answer.
        Err(crate::protocol::FrameError::Closed) => return,
        Err(e) => {
            log::warn!(
                "admin socket: request from {} dropped: {e}",
                peer.describe()
            );
            refusal(
                xplugin_model::ProblemCode::DaemonBadRequest,
                "admin socket",
                &format!(
                    "the request could not be read: {}",
                    xplugin_model::error_chain(&e)
                ),
                "use xplugin-controller of the same release as the daemon",
            )
        }
        Ok((envelope, fd)) => match access.check(&peer, envelope.request.is_read_only()) {
            Err(why) => {
                log::warn!("admin socket: {} refused: {why}", envelope.request.op());
                refusal(
                    xplugin_model::ProblemCode::DaemonAccessDenied,
                    "admin socket",
                    &why,
                    "run the command as root or as the configured admin_user (admin_group members may read status)",
                )
            }
            Ok(()) => {
                log::info!(
                    "admin socket: {} by {}",
                    envelope.request.op(),
                    peer.describe()
                );
                handler.handle(envelope, fd, &peer)
            }
        },
    };
    if let Err(e) = write_frame(&mut stream, &response, None) {
        log::warn!("admin socket: could not answer {}: {e}", peer.describe());
    }
}
