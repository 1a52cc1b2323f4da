//! What the fuzz targets share.

use std::path::PathBuf;

/// A private scratch directory for one fuzzing process, in `/dev/shm` when
/// there is one (targets that write files then cost no disk I/O). It is
/// kept at exit: libFuzzer leaves by `exit`, which runs no destructor, and
/// the targets leave it empty but for one input file.
pub fn scratch_dir(target: &str) -> PathBuf {
    let parent = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("xplugin-fuzz-{target}-"))
        .tempdir_in(parent)
        .expect("a scratch directory for the fuzz target");
    dir.keep()
}

/// Connected loopback TCP streams, `(ours, theirs)`: what the link's frame
/// reader needs (it reads a `TcpStream`, with deadlines). The listener is
/// made once per process, on 127.0.0.1 only.
pub fn loopback_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    use std::net::{TcpListener, TcpStream};
    use std::sync::OnceLock;
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    let listener =
        LISTENER.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("a loopback listener"));
    let addr = listener.local_addr().expect("the listener's address");
    let theirs = TcpStream::connect(addr).expect("connect over loopback");
    let (ours, _) = listener.accept().expect("accept over loopback");
    // As the link's server does: without it Nagle's algorithm holds each
    // small frame back for the peer's delayed ACK (40 ms per exchange).
    let _ = ours.set_nodelay(true);
    let _ = theirs.set_nodelay(true);
    (ours, theirs)
}
