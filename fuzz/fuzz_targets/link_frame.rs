//! The pendant link's frame decoder on arbitrary bytes from the network:
//! the bytes arrive on a real loopback TCP connection (the decoder reads a
//! `TcpStream` under deadlines) and the peer then closes its side.
//!
//! Input: one mode byte, then the bytes the peer sends.
//! * bit 0 clear: `frame::read_frame` until the stream ends or a frame is
//!   refused (length prefix, `MAX_FRAME`, truncation);
//!   set: the controller's `noise::respond` answers them as a handshake
//!   (frames, `MAX_HANDSHAKE_MESSAGE`, Noise message 1 and 3 parsing).
//! * bit 1 set (checked first): the bytes are a decrypted plugin message
//!   bridge frame's body: `bridge::BridgeFrame::decode`, whose result must
//!   encode back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xplugin_link::bridge::{BridgeFrame, KIND_BRIDGE, MAX_PAYLOAD};
use xplugin_link::frame::{read_frame, MAX_FRAME};
use xplugin_link::identity::Identity;
use xplugin_link::noise::respond;

/// Under the 1 s per input the fuzzer allows: the peer sends every byte at
/// once and closes, so no read should wait; one that does is a hang.
const DEADLINE: Duration = Duration::from_millis(900);

fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let root = xplugin_fuzz::scratch_dir("link-frame");
        Identity::load_or_create(&root, None)
            .expect("a link identity")
            .0
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if mode & 2 != 0 {
        if let Ok(frame) = BridgeFrame::decode(bytes) {
            assert!(frame.data.len() <= MAX_PAYLOAD);
            let mut back = Vec::new();
            frame.encode(&mut back).expect("a decoded frame encodes");
            assert_eq!(back[0], KIND_BRIDGE);
            assert_eq!(&back[1..], bytes, "decode and encode disagree");
        }
        return;
    }
    let identity = identity();
    let (mut ours, mut theirs) = xplugin_fuzz::loopback_pair();
    let bytes = bytes.to_vec();
    // The peer writes in a thread (the input may not fit the socket
    // buffers), half-closes, then drains what we answer until we close.
    let peer = std::thread::spawn(move || {
        let _ = theirs.write_all(&bytes);
        let _ = theirs.shutdown(Shutdown::Write);
        let mut sink = [0u8; 4096];
        while matches!(theirs.read(&mut sink), Ok(n) if n > 0) {}
    });
    if mode & 1 == 0 {
        loop {
            match read_frame(&mut ours, Instant::now() + DEADLINE, DEADLINE) {
                Ok(frame) => assert!(frame.len() <= MAX_FRAME),
                Err(e) => {
                    let _ = e.to_string();
                    break;
                }
            }
        }
        let _ = ours.shutdown(Shutdown::Both);
    } else {
        // The controller's side of the handshake; a closed or bad peer
        // fails it (a valid one cannot: message 3 needs our key).
        if let Ok(session) = respond(ours, identity, Instant::now() + DEADLINE) {
            session.close();
        }
    }
    peer.join().expect("the peer thread");
});
