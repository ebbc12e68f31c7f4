//! Shutdown: a second SIGTERM during the drain exits at once instead of waiting.

mod common;

use common::{Repo, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Opens a REST predict whose body never finishes arriving, and returns once the server has
/// taken it up (it answers `Expect: 100-continue` only when the handler starts reading the
/// body). Until the connection closes, that request is in flight and the drain cannot finish.
fn request_in_flight(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(&server.rest_addr).unwrap();
    write!(
        stream,
        "POST /v1/models/dynamic:predict HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\
         Expect: 100-continue\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("an interim response");
        assert_eq!(n, 1, "connection closed before 100 Continue");
        seen.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&seen);
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    stream.write_all(b"{\"instances\": [").unwrap();
    stream
}

#[test]
fn second_sigterm_exits_at_once_with_status_one() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 1"#)]);
    // A drain timeout far longer than the test: only the second signal can end the process.
    let mut server = Server::with_config(
        &repo,
        &[
            "--drain_timeout_seconds",
            "3600",
            "--body_timeout_seconds",
            "3600",
        ],
    );
    server.wait_loaded();
    let _held = request_in_flight(&server);

    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = server
            .next_line(deadline)
            .expect("the server announced the drain");
        if line.starts_with("vinoserve: SIGTERM received") {
            break;
        }
    }
    assert_eq!(
        server.child.try_wait().unwrap(),
        None,
        "the first SIGTERM drains, it does not exit"
    );
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        Some(1),
        "the second SIGTERM exits with status 1 although a request is still in flight"
    );
}
