//! Frames on the wire: a 4-byte big-endian length, then that many bytes
//! (a Noise handshake message or a Noise transport message). A frame is at
//! most [`MAX_FRAME`] bytes, the Noise message limit: a longer announcement
//! is refused before anything is read. Every read has a deadline: the first
//! byte of a frame must come before `start_by` and the whole frame before
//! `complete_by`, so a peer that sends one byte a minute is dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest frame, in bytes (the Noise protocol's message limit).
pub const MAX_FRAME: usize = 65535;
/// Time allowed to write one frame.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer closed the connection inside a frame.
    #[error("the peer closed the connection in the middle of a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced (or 4 for the length prefix).
        want: usize,
    },
    /// A frame longer than [`MAX_FRAME`] was announced.
    #[error("a frame of {0} bytes was announced, the limit is {MAX_FRAME}")]
    TooLarge(usize),
    /// A deadline passed.
    #[error("the peer did not send {what} in time")]
    Timeout {
        /// What was awaited.
        what: &'static str,
    },
    /// The socket failed.
    #[error("the connection failed")]
    Io(#[source] std::io::Error),
}

fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    what: &'static str,
    closed_at_start: bool,
) -> Result<(), FrameError> {
    let mut done = 0;
    while done < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::Timeout { what });
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(FrameError::Io)?;
        match stream.read(&mut buf[done..]) {
            Ok(0) if done == 0 && closed_at_start => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    got: done,
                    want: buf.len(),
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(FrameError::Timeout { what })
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Reads one frame: its first byte before `start_by`, the rest within
/// `complete_within` of that first byte.
///
/// # Errors
/// [`FrameError`].
pub fn read_frame(
    stream: &mut TcpStream,
    start_by: Instant,
    complete_within: Duration,
) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    read_full(stream, &mut prefix[..1], start_by, "a message", true)?;
    let complete_by = Instant::now() + complete_within;
    read_full(
        stream,
        &mut prefix[1..],
        complete_by,
        "a whole frame",
        false,
    )
    .map_err(|e| match e {
        FrameError::Truncated { got, .. } => FrameError::Truncated {
            got: got + 1,
            want: 4,
        },
        e => e,
    })?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    read_full(stream, &mut body, complete_by, "a whole frame", false)?;
    Ok(body)
}

/// Writes one frame.
///
/// # Errors
/// [`FrameError::TooLarge`] for a body over [`MAX_FRAME`];
/// [`FrameError::Io`] when the socket fails or the write deadline passes.
pub fn write_frame(stream: &mut TcpStream, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    stream
        .set_write_timeout(Some(WRITE_DEADLINE))
        .map_err(FrameError::Io)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out).map_err(FrameError::Io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let (mut a, mut b) = pair();
        write_frame(&mut a, b"hello").unwrap();
        let soon = Instant::now() + Duration::from_secs(5);
        let within = Duration::from_secs(5);
        assert_eq!(read_frame(&mut b, soon, within).unwrap(), b"hello");
        // Oversized announcement: refused without reading the body.
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes()).unwrap();
        assert!(matches!(
            read_frame(&mut b, soon, within),
            Err(FrameError::TooLarge(_))
        ));
        // Truncated: announced 10, sent 3, closed.
        a.write_all(&10u32.to_be_bytes()).unwrap();
        a.write_all(b"abc").unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, soon, within),
            Err(FrameError::Truncated { got: 3, want: 10 })
        ));
    }

    #[test]
    fn a_slow_peer_runs_into_the_deadline() {
        let (mut a, mut b) = pair();
        a.write_all(&[0, 0]).unwrap();
        let now = Instant::now();
        let e = read_frame(
            &mut b,
            now + Duration::from_millis(200),
            Duration::from_millis(300),
        );
        assert!(matches!(e, Err(FrameError::Timeout { .. })), "{e:?}");
    }
}
