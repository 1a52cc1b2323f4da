//! The handshake and the encrypted session: `Noise_XX_25519_ChaChaPoly_SHA256`
//! (the `snow` crate) with both static keys pinned.
//!
//! XX: the pendant (initiator) sends its ephemeral key; the controller
//! answers with its ephemeral and its static key; the pendant checks that
//! static key against the one it pinned *before* it reveals its own, then
//! sends its static key; the controller looks that key up in its list of
//! authorised pendants. Both ephemeral keys make every session's keys new
//! (forward secrecy); a recorded handshake replayed to the controller fails
//! at the third message, because the controller's ephemeral key differs.
//!
//! In the session every frame is one Noise transport message, encrypted
//! and authenticated under an implicit counter: a replayed, reordered,
//! dropped or altered frame fails to decrypt and ends the session.
//!
//! A frame's plaintext starts with its kind: [`KIND_MESSAGE`] (the last or
//! only piece of a JSON message), [`KIND_MESSAGE_MORE`] (a piece with more
//! to come; a message is at most [`MAX_MESSAGE`] bytes) or [`KIND_DATA`]
//! (an upload chunk: 8-byte offset, then bytes).

use crate::frame::{read_frame, write_frame, FrameError, MAX_FRAME};
use crate::identity::{Identity, NOISE_PARAMS};
use crate::key::PublicKey;
use std::net::TcpStream;
use std::time::Instant;

/// The prologue both sides bind into the handshake: a peer that is not an
/// xplugin link (or speaks another handshake) fails it.
pub const PROLOGUE: &[u8] = b"xplugin-link noise 1";
/// Largest handshake message accepted (XX messages are under 100 bytes
/// with empty payloads).
pub const MAX_HANDSHAKE_MESSAGE: usize = 512;
/// Largest logical message (JSON) in pieces.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Authentication tag per transport message.
const TAG_LEN: usize = 16;
/// Plaintext room in one frame.
pub const MAX_PLAINTEXT: usize = MAX_FRAME - TAG_LEN;
/// Frame kind: the last (or only) piece of a JSON message.
pub const KIND_MESSAGE: u8 = 1;
/// Frame kind: a piece of a JSON message, more follow.
pub const KIND_MESSAGE_MORE: u8 = 2;
/// Frame kind: upload data.
pub const KIND_DATA: u8 = 3;
/// Upload bytes per data frame.
pub const DATA_CHUNK: usize = MAX_PLAINTEXT - 9;

/// A fresh static key pair.
///
/// # Errors
/// The reason as text (no randomness source).
pub fn generate_keypair() -> Result<snow::Keypair, String> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e: snow::Error| e.to_string())?;
    snow::Builder::new(params)
        .generate_keypair()
        .map_err(|e| format!("cannot make a key pair: {e}"))
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Reading or writing a handshake frame failed (deadline, closed,
    /// oversized).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A handshake message did not verify: not an xplugin link, another
    /// handshake, a replayed or altered message.
    #[error("the handshake message did not verify ({0}): not an xplugin link peer, or a replayed or altered message")]
    Noise(String),
    /// The controller presented another key than the one pinned.
    #[error("the controller presented key {seen} (fingerprint {}), but {pinned} (fingerprint {}) is pinned for it", .seen.fingerprint(), .pinned.fingerprint())]
    WrongKey {
        /// The key pinned when pairing.
        pinned: PublicKey,
        /// The key the peer proved it holds.
        seen: PublicKey,
    },
}

fn noise(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

fn builder<'a>(identity: &'a Identity) -> Result<snow::Builder<'a>, HandshakeError> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(noise)?;
    snow::Builder::new(params)
        .local_private_key(identity.private())
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(noise)
}

fn read_handshake(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HandshakeError> {
    let frame = read_frame(
        stream,
        deadline,
        deadline.saturating_duration_since(Instant::now()),
    )?;
    if frame.len() > MAX_HANDSHAKE_MESSAGE {
        return Err(FrameError::TooLarge(frame.len()).into());
    }
    Ok(frame)
}

/// An established session.
pub struct Session {
    stream: TcpStream,
    transport: snow::TransportState,
    /// The peer's static key (authenticated by the handshake).
    pub remote: PublicKey,
    out: Vec<u8>,
}

/// One thing received in a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A whole JSON message.
    Message(Vec<u8>),
    /// An upload chunk.
    Data {
        /// Where it goes in the file.
        offset: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Why a session frame could not be received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The frame could not be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame did not decrypt: replayed, reordered, altered or forged.
    #[error(
        "a frame did not decrypt (replayed, reordered, altered or forged); the session is ended"
    )]
    Decrypt,
    /// The frame decrypted to something that is not a frame of this
    /// protocol (unknown kind, a piece sequence over the limit).
    #[error("{0}")]
    Malformed(String),
}

/// The pendant's side: connects the handshake on `stream` and checks the
/// controller's key against `pinned`.
///
/// # Errors
/// [`HandshakeError`]; [`HandshakeError::WrongKey`] before this host's
/// static key is sent.
pub fn initiate(
    mut stream: TcpStream,
    identity: &Identity,
    pinned: &PublicKey,
    deadline: Instant,
) -> Result<Session, HandshakeError> {
    let mut hs = builder(identity)?.build_initiator().map_err(noise)?;
    let mut buf = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs.write_message(&[], &mut buf).map_err(noise)?;
    write_frame(&mut stream, &buf[..n])?;
    let msg2 = read_handshake(&mut stream, deadline)?;
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    hs.read_message(&msg2, &mut payload).map_err(noise)?;
    let seen = hs
        .get_remote_static()
        .and_then(PublicKey::from_slice)
        .ok_or_else(|| HandshakeError::Noise("no static key in the answer".into()))?;
    if seen != *pinned && !crate::failpoint::pinning_disabled() {
        return Err(HandshakeError::WrongKey {
            pinned: *pinned,
            seen,
        });
    }
    let n = hs.write_message(&[], &mut buf).map_err(noise)?;
    write_frame(&mut stream, &buf[..n])?;
    let transport = hs.into_transport_mode().map_err(noise)?;
    Ok(Session {
        stream,
        transport,
        remote: seen,
        out: vec![0u8; MAX_FRAME],
    })
}

/// The controller's side: answers the handshake on `stream`. Whether the
/// pendant is authorised is the caller's decision, on [`Session::remote`].
///
/// # Errors
/// [`HandshakeError`].
pub fn respond(
    mut stream: TcpStream,
    identity: &Identity,
    deadline: Instant,
) -> Result<Session, HandshakeError> {
    let mut hs = builder(identity)?.build_responder().map_err(noise)?;
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let msg1 = read_handshake(&mut stream, deadline)?;
    hs.read_message(&msg1, &mut payload).map_err(noise)?;
    let mut buf = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs.write_message(&[], &mut buf).map_err(noise)?;
    write_frame(&mut stream, &buf[..n])?;
    let msg3 = read_handshake(&mut stream, deadline)?;
    hs.read_message(&msg3, &mut payload).map_err(noise)?;
    let remote = hs
        .get_remote_static()
        .and_then(PublicKey::from_slice)
        .ok_or_else(|| HandshakeError::Noise("no static key in the third message".into()))?;
    let transport = hs.into_transport_mode().map_err(noise)?;
    Ok(Session {
        stream,
        transport,
        remote,
        out: vec![0u8; MAX_FRAME],
    })
}

impl Session {
    /// The peer's address, for messages.
    pub fn peer_addr(&self) -> String {
        self.stream
            .peer_addr()
            .map_or_else(|_| "unknown address".into(), |a| a.to_string())
    }

    fn send_frame(&mut self, plaintext: &[u8]) -> Result<(), FrameError> {
        let n = self
            .transport
            .write_message(plaintext, &mut self.out)
            .map_err(|e| FrameError::Io(std::io::Error::other(e.to_string())))?;
        write_frame(&mut self.stream, &self.out[..n])
    }

    /// Sends one JSON message (in pieces when it is larger than a frame).
    ///
    /// # Errors
    /// [`FrameError`] when the connection fails, or the message is larger
    /// than [`MAX_MESSAGE`].
    pub fn send_message(&mut self, json: &[u8]) -> Result<(), FrameError> {
        if json.len() > MAX_MESSAGE {
            return Err(FrameError::TooLarge(json.len()));
        }
        let room = MAX_PLAINTEXT - 1;
        let mut pieces = json.chunks(room).peekable();
        if pieces.peek().is_none() {
            return self.send_frame(&[KIND_MESSAGE]);
        }
        let mut plain = Vec::with_capacity(MAX_PLAINTEXT);
        while let Some(piece) = pieces.next() {
            plain.clear();
            plain.push(if pieces.peek().is_some() {
                KIND_MESSAGE_MORE
            } else {
                KIND_MESSAGE
            });
            plain.extend_from_slice(piece);
            self.send_frame(&plain)?;
        }
        Ok(())
    }

    /// Sends one upload chunk of at most [`DATA_CHUNK`] bytes.
    ///
    /// # Errors
    /// [`FrameError`].
    pub fn send_data(&mut self, offset: u64, bytes: &[u8]) -> Result<(), FrameError> {
        if bytes.len() > DATA_CHUNK {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        let mut plain = Vec::with_capacity(9 + bytes.len());
        plain.push(KIND_DATA);
        plain.extend_from_slice(&offset.to_be_bytes());
        plain.extend_from_slice(bytes);
        self.send_frame(&plain)
    }

    /// Sends raw bytes as one frame, unencrypted: only for the tests of a
    /// peer that breaks the protocol.
    #[cfg(feature = "failpoints")]
    pub fn send_raw_frame(&mut self, body: &[u8]) -> Result<(), FrameError> {
        write_frame(&mut self.stream, body)
    }

    /// Receives one message or data chunk: its first frame must start
    /// before `start_by`, every frame must be complete before
    /// `complete_by` (a multi-piece message may take longer: each piece
    /// gets the same allowance once it starts).
    ///
    /// # Errors
    /// [`SessionError`]; after any error the session is unusable.
    pub fn receive(
        &mut self,
        start_by: Instant,
        complete_by: std::time::Duration,
    ) -> Result<Received, SessionError> {
        let mut message: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            let start = if first {
                start_by
            } else {
                Instant::now() + complete_by
            };
            let frame = read_frame(&mut self.stream, start, complete_by)?;
            let mut plain = vec![0u8; frame.len()];
            let n = self
                .transport
                .read_message(&frame, &mut plain)
                .map_err(|_| SessionError::Decrypt)?;
            plain.truncate(n);
            let Some((&kind, body)) = plain.split_first() else {
                return Err(SessionError::Malformed("an empty frame".into()));
            };
            match kind {
                KIND_DATA if first => {
                    if body.len() < 8 {
                        return Err(SessionError::Malformed(
                            "a data frame without offset".into(),
                        ));
                    }
                    let (off, bytes) = body.split_at(8);
                    let mut o = [0u8; 8];
                    o.copy_from_slice(off);
                    return Ok(Received::Data {
                        offset: u64::from_be_bytes(o),
                        bytes: bytes.to_vec(),
                    });
                }
                KIND_MESSAGE | KIND_MESSAGE_MORE => {
                    if message.len() + body.len() > MAX_MESSAGE {
                        return Err(SessionError::Malformed(format!(
                            "a message larger than {MAX_MESSAGE} bytes"
                        )));
                    }
                    message.extend_from_slice(body);
                    if kind == KIND_MESSAGE {
                        return Ok(Received::Message(message));
                    }
                }
                other => {
                    return Err(SessionError::Malformed(format!(
                        "a frame of unknown kind {other}"
                    )))
                }
            }
            first = false;
        }
    }

    /// The TCP stream itself, for the tests of a peer that breaks the
    /// framing after the handshake.
    #[cfg(feature = "failpoints")]
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The stream and the Noise state, for the bridge's split
    /// ([`crate::bridge::BridgeLink`]).
    pub(crate) fn into_parts(self) -> (TcpStream, snow::TransportState) {
        (self.stream, self.transport)
    }

    /// Closes the connection (both directions).
    pub fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
