//! The pendant link's message decoder behind an established session: a
//! real Noise XX session over loopback TCP, the controller's side made by
//! the link's own `noise::respond`, the pendant's by this harness (snow,
//! the link's parameters and prologue), which encrypts the fuzzer's
//! plaintext frames. Random ciphertext would only exercise the cipher; this
//! reaches `Session::receive` (frame kinds, message pieces, data offsets),
//! the JSON `Message` decoding both halves do, and what the controller does
//! with upload messages and data (`upload::Uploads`, a fresh area per input).
//!
//! Input: plaintext frames, each a 2-byte big-endian length then that many
//! bytes (cut to what one frame holds); a short last one takes what is left.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xplugin_link::frame::{read_frame, write_frame, MAX_FRAME};
use xplugin_link::identity::{Identity, NOISE_PARAMS};
use xplugin_link::message::{unwire, Hello, Message, PROTOCOL_MAX, PROTOCOL_MIN};
use xplugin_link::noise::{self, respond, Received, MAX_PLAINTEXT, PROLOGUE};
use xplugin_link::server::version_problem;
use xplugin_link::upload::{valid_sha256, Receiving, Uploads};

/// Under the 1 s per input the fuzzer allows (see link_frame).
const DEADLINE: Duration = Duration::from_millis(900);
/// Frames decoded per input at most (the input is finite anyway).
const MAX_RECEIVES: usize = 256;

struct Fixture {
    controller: Identity,
    pendant: snow::Keypair,
    uploads_root: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = xplugin_fuzz::scratch_dir("link-message");
        let controller = Identity::load_or_create(&root, None)
            .expect("a link identity")
            .0;
        Fixture {
            controller,
            pendant: noise::generate_keypair().expect("a pendant key pair"),
            uploads_root: root.join("uploads"),
        }
    })
}

/// The pendant: handshake, the plaintext frames encrypted, half-close, then
/// drain the controller's answers until it closes.
fn pendant(mut stream: TcpStream, key: &[u8], frames: Vec<Vec<u8>>) {
    let deadline = Instant::now() + DEADLINE;
    let params = NOISE_PARAMS.parse().expect("the link's Noise parameters");
    let Ok(mut hs) = snow::Builder::new(params)
        .local_private_key(key)
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_initiator())
    else {
        return;
    };
    let mut buf = vec![0u8; MAX_FRAME];
    let mut payload = vec![0u8; MAX_FRAME];
    let ok = (|| {
        let n = hs.write_message(&[], &mut buf).ok()?;
        write_frame(&mut stream, &buf[..n]).ok()?;
        let msg2 = read_frame(&mut stream, deadline, DEADLINE).ok()?;
        hs.read_message(&msg2, &mut payload).ok()?;
        let n = hs.write_message(&[], &mut buf).ok()?;
        write_frame(&mut stream, &buf[..n]).ok()?;
        let mut transport = hs.into_transport_mode().ok()?;
        for plain in &frames {
            let n = transport.write_message(plain, &mut buf).ok()?;
            write_frame(&mut stream, &buf[..n]).ok()?;
        }
        Some(())
    })();
    let _ = ok;
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn split_frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        let (len, rest) = match data {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (data.len(), &data[..0]),
        };
        let len = len.min(rest.len()).min(MAX_PLAINTEXT);
        frames.push(rest[..len].to_vec());
        data = &rest[len..];
    }
    frames
}

fn our_hello() -> Hello {
    Hello {
        protocol_min: PROTOCOL_MIN,
        protocol_max: PROTOCOL_MAX,
        protocol: None,
        program: "xplugin-controller".into(),
        release: "fuzz".into(),
        arch: "x86_64".into(),
        abi: None,
        host_version: None,
        device_id: None,
        clock_unix_ms: 0,
    }
}

/// What the two halves do with a decoded message (server.rs `converse` and
/// `handle`, client.rs), short of the install itself.
fn decoded(message: Message, uploads: &Uploads, upload: &mut Option<Receiving>) -> bool {
    let _ = (message.kind(), message.changes());
    // What one half sends, the other reads back the same.
    let text = serde_json::to_vec(&message).expect("a message serialises");
    let back: Message = serde_json::from_slice(&text).expect("a serialised message parses");
    assert_eq!(back, message, "a message changed on its way through JSON");
    match message {
        Message::Hello(theirs) => {
            let ours = our_hello();
            if ours.agree(&theirs).is_none() {
                let _ =
                    version_problem(&ours, &theirs, "this controller", "the pendant").to_string();
            }
            let _ = theirs.range();
        }
        Message::Refused { problem } => {
            let _ = problem.to_problem().to_string();
        }
        Message::Error { problems } => {
            let _ = unwire(&problems);
        }
        Message::UploadBegin { sha256, size } => match uploads.begin(&sha256, size) {
            Ok((r, _offset)) => *upload = r,
            Err(p) => {
                let _ = p.to_string();
            }
        },
        Message::UploadEnd { sha256 } => {
            let _ = valid_sha256(&sha256);
            if let Some(r) = upload.take() {
                let _ = uploads.finish(r);
            }
        }
        Message::Prepare { sha256, .. } => {
            let _ = valid_sha256(&sha256) && uploads.complete_path(&sha256).is_file();
        }
        _ => {}
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let frames = split_frames(data);
    let (ours, theirs) = xplugin_fuzz::loopback_pair();
    let key = f.pendant.private.clone();
    let peer = std::thread::spawn(move || pendant(theirs, &key, frames));

    if f.uploads_root.exists() {
        std::fs::remove_dir_all(&f.uploads_root).expect("clear the upload area");
    }
    let uploads = Uploads::new(&f.uploads_root, 1 << 20, 4 << 20);
    let mut upload: Option<Receiving> = None;
    match respond(ours, &f.controller, Instant::now() + DEADLINE) {
        Ok(mut session) => {
            for _ in 0..MAX_RECEIVES {
                match session.receive(Instant::now() + DEADLINE, DEADLINE) {
                    Ok(Received::Message(bytes)) => {
                        assert!(bytes.len() <= noise::MAX_MESSAGE);
                        if let Ok(m) = serde_json::from_slice::<Message>(&bytes) {
                            decoded(m, &uploads, &mut upload);
                        }
                    }
                    Ok(Received::Data { offset, bytes }) => {
                        let Some(r) = upload.as_mut() else { break };
                        if uploads.write(r, offset, &bytes).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = e.to_string();
                        break;
                    }
                }
            }
            session.close();
        }
        // Only a machine under heavy load makes the harness's own
        // handshake miss its deadline; nothing of the input was read then.
        Err(e) => {
            let _ = e.to_string();
        }
    }
    peer.join().expect("the pendant thread");
});
