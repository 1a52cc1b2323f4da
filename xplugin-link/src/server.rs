//! The controller's half: a TCP listener served by one accepting thread and
//! at most [`MAX_CONNECTIONS`] connection threads (small explicit stacks;
//! none of it touches the cycle thread). Per connection:
//!
//! ```text
//! handshake (Noise XX, HANDSHAKE_DEADLINE) -> pendant key authorised?
//!     no  -> Refused(link.pendant_not_authorised), close
//!     yes -> Welcome(role) -> Hello / Hello (versions agreed, or Refused)
//!         -> requests until the pendant closes or is idle IDLE_DEADLINE
//! ```
//!
//! Nothing the pendant sends is parsed before the handshake completes; the
//! handshake messages themselves are bounded and read under a deadline.
//! What the requests do is the [`LinkHandler`]'s (the daemon's install
//! transactions); uploads are received here ([`crate::upload`]).

use crate::bridge::{BridgeDecl, BridgeLink, BridgeOpened, BridgeSink, BridgeTx};
use crate::error::not_authorised;
use crate::failpoint::{kill_point, pinning_disabled};
use crate::identity::Identity;
use crate::key::PublicKey;
use crate::message::{
    wire, ConfigReply, ControllerStatus, Hello, Message, TransactionReply, WireProblem,
};
use crate::noise::{respond, Received, Session};
use crate::peers::{pendants, Role};
use crate::upload::{Receiving, Uploads};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xplugin_model::{Problem, ProblemCode};

/// Pendant connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 4;
/// Stack of the accepting and the connection threads (a connection thread
/// runs an install's verification).
pub const STACK_SIZE: usize = 512 * 1024;
/// Time allowed for the whole handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Time allowed for the pendant's hello after the handshake.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// Time a connection may sit idle between requests.
pub const IDLE_DEADLINE: Duration = Duration::from_secs(120);
/// Time allowed to complete one frame once it started.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(30);

/// The pendant a request comes from.
#[derive(Debug, Clone)]
pub struct Pendant {
    /// Its key.
    pub key: PublicKey,
    /// Its role.
    pub role: Role,
    /// Where it connected from.
    pub address: String,
}

impl Pendant {
    /// `pendant 3f2a-... (10.0.0.5:40122)`, for records and logs.
    pub fn describe(&self) -> String {
        format!("pendant {} ({})", self.key.fingerprint(), self.address)
    }
}

/// A request's outcome: an answer, or problems.
pub type Answer<T> = Result<T, Vec<Problem>>;

/// What answers the pendants' requests (the daemon).
pub trait LinkHandler: Send + Sync + 'static {
    /// This controller's hello (versions are filled in by the server).
    fn hello(&self) -> Hello;
    /// The controller's status.
    fn status(&self) -> Answer<ControllerStatus>;
    /// Verifies and prepares the uploaded package at `package` (the
    /// handler may move it away).
    fn prepare(
        &self,
        pendant: &Pendant,
        package: &Path,
        label: &str,
        force: bool,
        allow_downgrade: bool,
        request: &str,
    ) -> Answer<TransactionReply>;
    /// Commits a prepared transaction and applies by `apply`.
    fn commit(
        &self,
        pendant: &Pendant,
        transaction: &str,
        apply: Option<&str>,
    ) -> Answer<TransactionReply>;
    /// Aborts an open transaction.
    fn abort(&self, pendant: &Pendant, transaction: &str, reason: &str)
        -> Answer<TransactionReply>;
    /// The outcome of a transaction.
    fn outcome(&self, transaction: &str) -> Answer<TransactionReply>;
    /// The transaction prepared for `request`.
    fn lookup(&self, request: &str) -> Answer<TransactionReply>;
    /// A controller plugin's configuration.
    fn config_show(&self, plugin: &str) -> Answer<ConfigReply>;
    /// Changes a controller plugin's configuration (validated, offered to
    /// the running plugin, stored when taken).
    fn config_set(
        &self,
        pendant: &Pendant,
        plugin: &str,
        assignments: &[String],
    ) -> Answer<ConfigReply>;
    /// Opens the plugin message bridge for `pendant`'s client plugins: the
    /// routes the controller accepts, the queue it sends from and what takes
    /// the frames in. [`BridgeAttach::closed`] is called once the bridge
    /// ends.
    fn bridge_open(&self, pendant: &Pendant, plugins: &[BridgeDecl]) -> Answer<BridgeAttach>;
}

/// A bridge the handler opened for one pendant connection.
pub struct BridgeAttach {
    /// Sent to the pendant as `bridge-opened`.
    pub opened: BridgeOpened,
    /// The session's sender (the handler keeps a clone to send with).
    pub outbound: BridgeTx,
    /// What takes the frames that arrive.
    pub sink: Arc<dyn BridgeSink>,
    /// Called once when the bridge ended, with why.
    pub closed: Box<dyn FnOnce(&str) + Send>,
}

/// What the server needs.
pub struct ServerOptions {
    /// `ADDR:PORT` to listen on.
    pub listen: String,
    /// The controller's install root (its identity, paired pendants and
    /// upload area live under `state/`).
    pub root: PathBuf,
    /// This device's id (a copied identity from another device is replaced).
    pub device_id: Option<String>,
    /// The upload area.
    pub uploads: Uploads,
}

/// The running server. Dropping it stops accepting.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    opts: ServerOptions,
    handler: Arc<dyn LinkHandler>,
}

impl Server {
    /// Binds `opts.listen` and serves with `handler`.
    ///
    /// # Errors
    /// The system's error (address in use, not this computer's).
    pub fn start(opts: ServerOptions, handler: Arc<dyn LinkHandler>) -> std::io::Result<Server> {
        // Make (or check) the identity now, so a broken key file fails the
        // start instead of every connection.
        Identity::load_or_create(&opts.root, opts.device_id.as_deref())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let listener = TcpListener::bind(&opts.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let shared = Arc::new(Shared { opts, handler });
        let thread = std::thread::Builder::new()
            .name("xplugin-link".into())
            .stack_size(STACK_SIZE)
            .spawn(move || accept_loop(listener, stop2, shared))?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accepting thread. Connections
    /// being served end on their own threads (their deadlines bound them).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    log::warn!(
                        "link: connection from {peer} closed: {MAX_CONNECTIONS} pendant connections are served already"
                    );
                    drop(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (active2, shared2) = (active.clone(), shared.clone());
                let spawned = std::thread::Builder::new()
                    .name("xplugin-link-conn".into())
                    .stack_size(STACK_SIZE)
                    .spawn(move || {
                        serve(stream, peer, &shared2);
                        active2.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    active.fetch_sub(1, Ordering::SeqCst);
                    log::warn!("link: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("link: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One connection's reason to end.
enum End {
    /// The pendant closed or went idle.
    Quiet,
    /// Something to log.
    Because(String),
}

fn send(session: &mut Session, m: &Message) -> Result<(), End> {
    let bytes = serde_json::to_vec(m).map_err(|e| End::Because(format!("cannot encode: {e}")))?;
    session
        .send_message(&bytes)
        .map_err(|e| End::Because(format!("cannot send {}: {e}", m.kind())))
}

fn refuse(session: &mut Session, problem: &Problem) {
    let _ = send(
        session,
        &Message::Refused {
            problem: WireProblem::from(problem),
        },
    );
    session.close();
}

fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let identity =
        match Identity::load_or_create(&shared.opts.root, shared.opts.device_id.as_deref()) {
            Ok((id, _)) => id,
            Err(e) => {
                log::error!("link: connection from {peer} dropped: {e}");
                return;
            }
        };
    let mut session = match respond(stream, &identity, Instant::now() + HANDSHAKE_DEADLINE) {
        Ok(s) => s,
        Err(e) => {
            log::warn!(
                "link: handshake from {peer} failed: {}",
                xplugin_model::error_chain(&e)
            );
            return;
        }
    };
    kill_point("link-server-after-handshake");
    let key = session.remote;
    let role = match pendants(&shared.opts.root) {
        Ok(list) => list.iter().find(|p| p.key == key).map(|p| p.role),
        Err(e) => {
            log::error!("link: {e}");
            None
        }
    };
    let role = match role {
        Some(r) => r,
        None if pinning_disabled() => Role::Install,
        None => {
            let problem = not_authorised(&identity.public, &key);
            log::warn!(
                "link: pendant {peer} refused: {} (pair it with `xplugin-controller pair {key}`)",
                problem.message
            );
            refuse(&mut session, &problem);
            return;
        }
    };
    let pendant = Pendant {
        key,
        role,
        address: peer.to_string(),
    };
    match converse(&mut session, &pendant, shared) {
        Ok(None) | Err(End::Quiet) => {}
        Ok(Some(attach)) => return bridge(session, &pendant, attach),
        Err(End::Because(why)) => log::warn!("link: {} dropped: {why}", pendant.describe()),
    }
    session.close();
}

/// Runs the plugin message bridge on this connection until it ends.
fn bridge(session: Session, pendant: &Pendant, attach: BridgeAttach) {
    let BridgeAttach {
        outbound,
        sink,
        closed,
        ..
    } = attach;
    let why = match BridgeLink::new(session) {
        Ok(link) => crate::bridge::pump(link, outbound, sink).to_string(),
        Err(e) => format!("cannot split the connection: {e}"),
    };
    log::info!(
        "link: {}: plugin message bridge ended: {why}",
        pendant.describe()
    );
    closed(&why);
}

fn converse(
    session: &mut Session,
    pendant: &Pendant,
    shared: &Shared,
) -> Result<Option<BridgeAttach>, End> {
    send(session, &Message::Welcome { role: pendant.role })?;
    let theirs = match receive(session, Instant::now() + HELLO_DEADLINE)? {
        Received::Message(bytes) => match serde_json::from_slice::<Message>(&bytes) {
            Ok(Message::Hello(h)) => h,
            _ => return Err(End::Because("the first message was not a hello".into())),
        },
        Received::Data { .. } => return Err(End::Because("data before hello".into())),
    };
    let mut ours = shared.handler.hello();
    ours.protocol_min = crate::message::PROTOCOL_MIN;
    ours.protocol_max = crate::message::PROTOCOL_MAX;
    let Some(agreed) = ours.agree(&theirs) else {
        let problem = version_problem(&ours, &theirs, "this controller", "the pendant");
        log::warn!("link: {} refused: {}", pendant.describe(), problem.message);
        refuse(session, &problem);
        return Ok(None);
    };
    ours.protocol = Some(agreed);
    send(session, &Message::Hello(ours))?;
    kill_point("link-server-after-hello");
    log::info!(
        "link: {} connected ({} {}, protocol {agreed}, role {})",
        pendant.describe(),
        theirs.program,
        theirs.release,
        pendant.role
    );
    let mut upload: Option<Receiving> = None;
    loop {
        let received = receive(session, Instant::now() + IDLE_DEADLINE)?;
        let bytes = match received {
            Received::Data { offset, bytes } => {
                let Some(r) = upload.as_mut() else {
                    return Err(End::Because("upload data without upload-begin".into()));
                };
                if let Err(p) = shared.opts.uploads.write(r, offset, &bytes) {
                    send(session, &error(&[p]))?;
                    return Err(End::Because("an upload chunk did not fit".into()));
                }
                kill_point("link-server-after-upload-chunk");
                continue;
            }
            Received::Message(bytes) => bytes,
        };
        let message = match serde_json::from_slice::<Message>(&bytes) {
            Ok(m) => m,
            Err(e) => {
                let p = Problem::new(
                    ProblemCode::LinkBadFrame,
                    pendant.describe(),
                    format!("the request is not a message of link protocol {agreed}: {e}"),
                    "use an xplugin-client of a compatible release",
                );
                send(session, &error(&[p]))?;
                return Err(End::Because(format!("an unreadable request: {e}")));
            }
        };
        if message.changes() && pendant.role == Role::Status {
            let p = Problem::new(
                ProblemCode::LinkRoleDenied,
                pendant.describe(),
                format!(
                    "this pendant is paired with the status role, which may only look; it asked for {}",
                    message.kind()
                ),
                format!(
                    "on the controller: `xplugin-controller pair {} --role install` if it should install",
                    pendant.key
                ),
            );
            log::warn!("link: {}", p.message);
            send(session, &error(&[p]))?;
            continue;
        }
        if let Message::BridgeOpen { plugins } = &message {
            match shared.handler.bridge_open(pendant, plugins) {
                Ok(attach) => {
                    send(session, &Message::BridgeOpened(attach.opened.clone()))?;
                    return Ok(Some(attach));
                }
                Err(p) => {
                    send(session, &error(&p))?;
                    continue;
                }
            }
        }
        let answer = handle(message, &mut upload, pendant, shared);
        send(session, &answer)?;
    }
}

fn receive(session: &mut Session, start_by: Instant) -> Result<Received, End> {
    session
        .receive(start_by, FRAME_DEADLINE)
        .map_err(|e| match e {
            crate::noise::SessionError::Frame(crate::frame::FrameError::Closed) => End::Quiet,
            e => End::Because(e.to_string()),
        })
}

fn error(problems: &[Problem]) -> Message {
    Message::Error {
        problems: wire(problems),
    }
}

fn reply(a: Answer<TransactionReply>) -> Message {
    match a {
        Ok(r) => Message::Transaction(r),
        Err(p) => error(&p),
    }
}

/// The refusal for two ranges that do not overlap.
pub fn version_problem(ours: &Hello, theirs: &Hello, we: &str, they: &str) -> Problem {
    Problem::new(
        ProblemCode::LinkProtocolVersion,
        format!("{} {}", theirs.program, theirs.release),
        format!(
            "{they} speaks link protocol versions {}, {we} speaks {}: no common version",
            theirs.range(),
            ours.range()
        ),
        "update the older of the two programs (xplugin-client on the pendant, xplugin-controller on the controller) so the ranges overlap",
    )
}

fn handle(
    message: Message,
    upload: &mut Option<Receiving>,
    pendant: &Pendant,
    shared: &Shared,
) -> Message {
    let h = &*shared.handler;
    let uploads = &shared.opts.uploads;
    match message {
        Message::Status => match h.status() {
            Ok(s) => Message::StatusReport(s),
            Err(p) => error(&p),
        },
        Message::UploadBegin { sha256, size } => match uploads.begin(&sha256, size) {
            Ok((r, offset)) => {
                *upload = r;
                kill_point("link-server-after-upload-begin");
                Message::UploadAt { offset }
            }
            Err(p) => error(&[p]),
        },
        Message::UploadEnd { sha256 } => match upload.take() {
            None if uploads.complete_path(&sha256).is_file() => Message::Uploaded {
                size: std::fs::metadata(uploads.complete_path(&sha256)).map_or(0, |m| m.len()),
                sha256,
            },
            None => error(&[Problem::new(
                ProblemCode::LinkUploadMismatch,
                format!("upload {sha256}"),
                "upload-end without an upload in progress",
                "import again",
            )]),
            Some(r) => match uploads.finish(r) {
                Ok(path) => {
                    kill_point("link-server-after-upload-complete");
                    Message::Uploaded {
                        size: std::fs::metadata(&path).map_or(0, |m| m.len()),
                        sha256,
                    }
                }
                Err(p) => error(&[p]),
            },
        },
        Message::Prepare {
            sha256,
            label,
            force,
            allow_downgrade,
            request,
        } => {
            let path = uploads.complete_path(&sha256);
            if !crate::upload::valid_sha256(&sha256) || !path.is_file() {
                return error(&[Problem::new(
                    ProblemCode::LinkUploadMismatch,
                    format!("upload {sha256}"),
                    "no complete upload with that SHA-256 is on the controller",
                    "upload the package first (xplugin-client import does)",
                )]);
            }
            let a = h.prepare(pendant, &path, &label, force, allow_downgrade, &request);
            kill_point("link-server-after-prepare");
            reply(a)
        }
        Message::Commit { transaction, apply } => {
            kill_point("link-server-before-commit");
            let a = h.commit(pendant, &transaction, apply.as_deref());
            kill_point("link-server-after-commit");
            reply(a)
        }
        Message::Abort {
            transaction,
            reason,
        } => {
            let reason = if reason.is_empty() {
                format!("aborted by {}", pendant.describe())
            } else {
                format!("aborted by {}: {reason}", pendant.describe())
            };
            reply(h.abort(pendant, &transaction, &reason))
        }
        Message::Outcome { transaction } => reply(h.outcome(&transaction)),
        Message::Lookup { request } => reply(h.lookup(&request)),
        Message::ConfigShow { plugin } => match h.config_show(&plugin) {
            Ok(c) => Message::Config(c),
            Err(p) => error(&p),
        },
        Message::ConfigSet {
            plugin,
            assignments,
        } => match h.config_set(pendant, &plugin, &assignments) {
            Ok(c) => Message::Config(c),
            Err(p) => error(&p),
        },
        other => error(&[Problem::new(
            ProblemCode::LinkBadFrame,
            pendant.describe(),
            format!("{} is not a request a pendant may send", other.kind()),
            "use an xplugin-client of a compatible release",
        )]),
    }
}
