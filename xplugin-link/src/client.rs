//! The pendant's half: connects to a paired controller, checks its pinned
//! key in the handshake, exchanges hellos (a common protocol version, or a
//! refusal naming both ranges; a clock skew is reported), then makes
//! requests, each answered once, each answer awaited under a deadline.

use crate::error::LinkError;
use crate::failpoint::{drop_point, kill_point};
use crate::identity::Identity;
use crate::message::{
    unwire, ConfigReply, ControllerStatus, Hello, Message, TransactionReply, CLOCK_SKEW_LIMIT_S,
};
use crate::noise::{initiate, Received, Session, DATA_CHUNK};
use crate::peers::{controller_at, Role};
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};
use xplugin_model::{Problem, ProblemCode};

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the handshake and the hellos.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(15);
/// Time allowed to complete one frame once it started.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(30);
/// How long a quick request (status, outcome, abort) may take.
pub const QUICK_DEADLINE: Duration = Duration::from_secs(60);
/// How long the controller may take to hash a finished upload.
pub const UPLOAD_END_DEADLINE: Duration = Duration::from_secs(600);
/// How long the controller may take to verify and stage a package.
pub const PREPARE_DEADLINE: Duration = Duration::from_secs(1800);
/// How long the controller may take to commit (build a generation).
pub const COMMIT_DEADLINE: Duration = Duration::from_secs(900);

/// A connection to a controller.
pub struct Connection {
    session: Session,
    /// The controller's address.
    pub address: String,
    /// The controller's hello.
    pub controller: Hello,
    /// What this pendant may do there.
    pub role: Role,
    /// Warnings of the hello (a clock skew).
    pub warnings: Vec<Problem>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Connects to the controller paired at `address` (normalised, see
/// [`crate::address::normalize`]) as the pendant of install root `root`,
/// saying `hello` about itself.
///
/// # Errors
/// [`LinkError`]: not paired, unreachable, a key mismatch, refused (an
/// unknown pendant key, no common version).
pub fn connect(
    root: &Path,
    address: &str,
    device_id: Option<&str>,
    mut hello: Hello,
) -> Result<Connection, LinkError> {
    let mut c = handshake(root, address, device_id)?;
    hello.protocol_min = crate::message::PROTOCOL_MIN;
    hello.protocol_max = crate::message::PROTOCOL_MAX;
    hello.clock_unix_ms = now_ms();
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    let theirs = match c.exchange(&Message::Hello(hello.clone()), "saying hello", deadline)? {
        Message::Hello(h) => h,
        other => return Err(c.unexpected(&other)),
    };
    let agreed = theirs
        .protocol
        .filter(|v| (hello.protocol_min..=hello.protocol_max).contains(v));
    if hello.agree(&theirs).is_none() || agreed.is_none() {
        let problem =
            crate::server::version_problem(&hello, &theirs, "this pendant", "the controller");
        return Err(LinkError::Refused {
            peer: address.to_string(),
            problem: Box::new(problem),
        });
    }
    let skew_ms = now_ms().abs_diff(theirs.clock_unix_ms);
    if skew_ms / 1000 > CLOCK_SKEW_LIMIT_S {
        c.warnings.push(Problem::new(
            ProblemCode::LinkClockSkew,
            format!("controller {address}"),
            format!(
                "the controller's clock differs from this pendant's by {} s (more than {CLOCK_SKEW_LIMIT_S} s); licenses are checked against each computer's own clock",
                skew_ms / 1000
            ),
            "set both clocks (NTP)",
        ));
    }
    c.controller = theirs;
    kill_point("link-client-after-hello");
    Ok(c)
}

/// The handshake alone: connects, authenticates both sides and takes the
/// controller's welcome, without the hellos ([`connect`] does both; the
/// tests replay recorded sessions of other releases after this).
///
/// # Errors
/// As [`connect`].
pub fn handshake(
    root: &Path,
    address: &str,
    device_id: Option<&str>,
) -> Result<Connection, LinkError> {
    let paired = controller_at(root, address)?.ok_or_else(|| LinkError::NotPaired {
        address: address.to_string(),
    })?;
    let (identity, _) = Identity::load_or_create(root, device_id)?;
    let connect_err = |source| LinkError::Connect {
        address: address.to_string(),
        source,
    };
    let addrs: Vec<_> = address.to_socket_addrs().map_err(connect_err)?.collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the name resolves to no address",
    );
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| connect_err(last))?;
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    let session = initiate(stream, &identity, &paired.key, deadline).map_err(|source| {
        LinkError::Handshake {
            peer: address.to_string(),
            source,
        }
    })?;
    kill_point("link-client-after-handshake");
    let mut c = Connection {
        session,
        address: address.to_string(),
        controller: empty_hello(),
        role: Role::Status,
        warnings: Vec::new(),
    };
    match c.receive_message("waiting for the controller's welcome", deadline)? {
        Message::Welcome { role } => c.role = role,
        other => return Err(c.unexpected(&other)),
    }
    Ok(c)
}

/// The controller's hello until it is received.
fn empty_hello() -> Hello {
    Hello {
        protocol_min: 0,
        protocol_max: 0,
        ..Hello::this_host("", None, None)
    }
}

impl Connection {
    fn receive_message(&mut self, during: &str, start_by: Instant) -> Result<Message, LinkError> {
        let got = self
            .session
            .receive(start_by, FRAME_DEADLINE)
            .map_err(|e| LinkError::session(&self.address, during, e))?;
        let bytes = match got {
            Received::Message(b) => b,
            Received::Data { .. } => {
                return Err(LinkError::Protocol {
                    peer: self.address.clone(),
                    why: "the controller sent upload data".into(),
                })
            }
        };
        let m: Message = serde_json::from_slice(&bytes).map_err(|e| LinkError::Protocol {
            peer: self.address.clone(),
            why: format!("an answer that is not a message of the protocol: {e}"),
        })?;
        match m {
            Message::Refused { problem } => Err(LinkError::Refused {
                peer: self.address.clone(),
                problem: Box::new(problem.to_problem()),
            }),
            Message::Error { problems } => Err(LinkError::Remote {
                peer: self.address.clone(),
                problems: unwire(&problems),
            }),
            m => Ok(m),
        }
    }

    fn unexpected(&self, m: &Message) -> LinkError {
        LinkError::Protocol {
            peer: self.address.clone(),
            why: format!("unexpected {}", m.kind()),
        }
    }

    fn send(&mut self, m: &Message, during: &str) -> Result<(), LinkError> {
        let bytes = serde_json::to_vec(m).map_err(|e| LinkError::Protocol {
            peer: self.address.clone(),
            why: format!("cannot encode {}: {e}", m.kind()),
        })?;
        self.session
            .send_message(&bytes)
            .map_err(|e| LinkError::session(&self.address, during, e))
    }

    fn exchange(
        &mut self,
        m: &Message,
        during: &str,
        deadline: Instant,
    ) -> Result<Message, LinkError> {
        self.send(m, during)?;
        self.receive_message(during, deadline)
    }

    fn transaction(
        &mut self,
        m: &Message,
        during: &str,
        within: Duration,
    ) -> Result<TransactionReply, LinkError> {
        match self.exchange(m, during, Instant::now() + within)? {
            Message::Transaction(t) => Ok(t),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The controller's status.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn status(&mut self) -> Result<ControllerStatus, LinkError> {
        match self.exchange(
            &Message::Status,
            "asking for the status",
            Instant::now() + QUICK_DEADLINE,
        )? {
            Message::StatusReport(s) => Ok(s),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Uploads the file at `path` (`size` bytes, SHA-256 `sha256`),
    /// continuing where the controller's copy ends. `progress` is told the
    /// offset the upload starts from.
    ///
    /// # Errors
    /// [`LinkError`]; a lost connection can be resumed by uploading again
    /// on a new connection.
    pub fn upload(
        &mut self,
        path: &Path,
        sha256: &str,
        size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), LinkError> {
        let begin = Message::UploadBegin {
            sha256: sha256.to_string(),
            size,
        };
        let offset = match self.exchange(
            &begin,
            "starting the upload",
            Instant::now() + QUICK_DEADLINE,
        )? {
            Message::UploadAt { offset } if offset <= size => offset,
            other => return Err(self.unexpected(&other)),
        };
        kill_point("link-client-after-upload-begin");
        progress(offset);
        let read_err = |e: std::io::Error| LinkError::Protocol {
            peer: self.address.clone(),
            why: format!("cannot read {}: {e}", path.display()),
        };
        if offset < size {
            let mut file = std::fs::File::open(path).map_err(read_err)?;
            file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
            let mut buf = vec![0u8; DATA_CHUNK];
            let mut at = offset;
            while at < size {
                let want =
                    usize::try_from((size - at).min(DATA_CHUNK as u64)).unwrap_or(DATA_CHUNK);
                file.read_exact(&mut buf[..want])
                    .map_err(|e| LinkError::Protocol {
                        peer: self.address.clone(),
                        why: format!("cannot read {}: {e}", path.display()),
                    })?;
                self.session
                    .send_data(at, &buf[..want])
                    .map_err(|e| LinkError::session(&self.address, "uploading", e))?;
                at += want as u64;
                kill_point("link-client-after-upload-chunk");
                if drop_point("link-client-after-upload-chunk") {
                    self.session.close();
                    return Err(LinkError::session(
                        &self.address,
                        "uploading",
                        crate::frame::FrameError::Closed,
                    ));
                }
            }
        }
        let end = Message::UploadEnd {
            sha256: sha256.to_string(),
        };
        match self.exchange(
            &end,
            "finishing the upload",
            Instant::now() + UPLOAD_END_DEADLINE,
        )? {
            Message::Uploaded { sha256: s, size: n } if s == sha256 && n == size => {}
            other => return Err(self.unexpected(&other)),
        }
        kill_point("link-client-after-upload-end");
        Ok(())
    }

    /// Asks the controller to verify and prepare the uploaded package.
    ///
    /// # Errors
    /// [`LinkError::Remote`] with the controller's problems when it refuses.
    pub fn prepare(
        &mut self,
        sha256: &str,
        label: &str,
        force: bool,
        allow_downgrade: bool,
        request: &str,
    ) -> Result<TransactionReply, LinkError> {
        let m = Message::Prepare {
            sha256: sha256.to_string(),
            label: label.to_string(),
            force,
            allow_downgrade,
            request: request.to_string(),
        };
        self.transaction(&m, "preparing", PREPARE_DEADLINE)
    }

    /// Commits transaction `id`, applying by `apply`.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn commit(&mut self, id: &str, apply: Option<&str>) -> Result<TransactionReply, LinkError> {
        let m = Message::Commit {
            transaction: id.to_string(),
            apply: apply.map(str::to_string),
        };
        self.transaction(&m, "committing", COMMIT_DEADLINE)
    }

    /// Aborts transaction `id`.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn abort(&mut self, id: &str, reason: &str) -> Result<TransactionReply, LinkError> {
        let m = Message::Abort {
            transaction: id.to_string(),
            reason: reason.to_string(),
        };
        self.transaction(&m, "aborting", QUICK_DEADLINE)
    }

    /// The outcome of transaction `id`.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn outcome(&mut self, id: &str) -> Result<TransactionReply, LinkError> {
        let m = Message::Outcome {
            transaction: id.to_string(),
        };
        self.transaction(&m, "asking for an outcome", QUICK_DEADLINE)
    }

    /// The transaction prepared for request `request`.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn lookup(&mut self, request: &str) -> Result<TransactionReply, LinkError> {
        let m = Message::Lookup {
            request: request.to_string(),
        };
        self.transaction(&m, "looking up a request", QUICK_DEADLINE)
    }

    /// A controller plugin's configuration (`config show` on the
    /// controller).
    ///
    /// # Errors
    /// [`LinkError`]; the controller's refusal is [`LinkError::Remote`].
    pub fn config_show(&mut self, plugin: &str) -> Result<ConfigReply, LinkError> {
        let m = Message::ConfigShow {
            plugin: plugin.to_string(),
        };
        self.config(&m, "asking for a plugin's configuration", QUICK_DEADLINE)
    }

    /// Changes a controller plugin's configuration (`config set` on the
    /// controller): the controller validates, offers the change to the
    /// running plugin between two of its steps, and stores what it took.
    ///
    /// # Errors
    /// [`LinkError`]; the controller's refusal (a value out of range, the
    /// plugin refusing it) is [`LinkError::Remote`] with its problems.
    pub fn config_set(
        &mut self,
        plugin: &str,
        assignments: &[String],
    ) -> Result<ConfigReply, LinkError> {
        let m = Message::ConfigSet {
            plugin: plugin.to_string(),
            assignments: assignments.to_vec(),
        };
        // The controller waits up to a minute for the running plugin.
        self.config(&m, "changing a plugin's configuration", 2 * QUICK_DEADLINE)
    }

    fn config(
        &mut self,
        m: &Message,
        during: &str,
        within: Duration,
    ) -> Result<ConfigReply, LinkError> {
        match self.exchange(m, during, Instant::now() + within)? {
            Message::Config(c) => Ok(c),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Opens the plugin message bridge for these client plugins; on success
    /// the connection carries bridge frames only: turn it into a
    /// [`crate::bridge::BridgeLink`] with [`Connection::into_bridge`].
    ///
    /// # Errors
    /// [`LinkError`]; the controller's refusal (a status-role pendant,
    /// another pendant holding the bridge) is [`LinkError::Remote`].
    pub fn open_bridge(
        &mut self,
        plugins: Vec<crate::bridge::BridgeDecl>,
    ) -> Result<crate::bridge::BridgeOpened, LinkError> {
        match self.exchange(
            &Message::BridgeOpen { plugins },
            "opening the plugin message bridge",
            Instant::now() + QUICK_DEADLINE,
        )? {
            Message::BridgeOpened(o) => Ok(o),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The connection as a running bridge's two halves (after
    /// [`Connection::open_bridge`]).
    ///
    /// # Errors
    /// The socket cannot be duplicated.
    pub fn into_bridge(self) -> std::io::Result<crate::bridge::BridgeLink> {
        crate::bridge::BridgeLink::new(self.session)
    }

    /// Sends any message and returns the answer: for the tests of old and
    /// new protocol sessions.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn raw_exchange(&mut self, json: &[u8], within: Duration) -> Result<Message, LinkError> {
        self.session
            .send_message(json)
            .map_err(|e| LinkError::session(&self.address, "sending", e))?;
        self.receive_message("waiting for an answer", Instant::now() + within)
    }

    /// The session, for tests that break the protocol on purpose.
    #[cfg(feature = "failpoints")]
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The TCP stream, for tests that break the framing.
    #[cfg(feature = "failpoints")]
    pub fn into_stream(self) -> TcpStream {
        self.session.into_stream()
    }

    /// Closes the connection.
    pub fn close(self) {
        self.session.close();
    }
}
