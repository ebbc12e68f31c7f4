//! Connection phases have limits, so hostile or broken clients cannot hold the server's
//! descriptors and buffers forever: a REST body that trickles in gets 408, a gRPC connection
//! that never speaks is closed, every gRPC connection is told how many streams it may open,
//! running out of file descriptors makes the gRPC accept loop back off (one log line per
//! interval, no busy loop) while open connections keep being served, and a client that stops
//! reading its answer is disconnected after the send timeout.

mod common;

use common::{Repo, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Fail-safe for reads that wait for the server to act (it acts after 1-2 s here).
const FAIL_SAFE: Duration = Duration::from_secs(120);

fn add_request() -> vinoserve::proto::tensorflow::serving::PredictRequest {
    common::zeros_request("add", 10)
}

/// Everything the server sends until it closes the connection.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(FAIL_SAFE)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
}

#[test]
fn a_trickling_rest_body_gets_408_and_a_silent_grpc_connection_is_closed() {
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(
        &repo,
        &[
            "--body_timeout_seconds",
            "1",
            "--handshake_timeout_seconds",
            "1",
        ],
    );
    server.wait_loaded();
    // Twenty clients announce 100,000 bytes and send one.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(&server.rest_addr).unwrap();
            write!(
                stream,
                "POST /v1/models/add:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n{{"
            )
            .unwrap();
            stream
        })
        .collect();
    for stream in &mut slow {
        let answer = String::from_utf8_lossy(&read_until_closed(stream)).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("--body_timeout_seconds"), "{answer}");
    }
    // A TCP connection to the gRPC port that never sends the HTTP/2 preface.
    let mut silent = TcpStream::connect(&server.grpc_addr).unwrap();
    let opened = Instant::now();
    read_until_closed(&mut silent);
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "closed before its time"
    );
}

#[test]
fn grpc_connections_are_told_their_stream_limit() {
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, &["--http2_max_concurrent_streams", "7"]);
    server.wait_loaded();
    let mut stream = TcpStream::connect(&server.grpc_addr).unwrap();
    stream.set_read_timeout(Some(FAIL_SAFE)).unwrap();
    // The client preface and an empty SETTINGS frame; the server answers with its SETTINGS.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[3], 0x4, "the server's first frame is SETTINGS");
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(0x3, 7)), "{settings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_grpc_accept_backs_off_and_open_connections_serve() {
    let repo = Repo::new(&[("add", "")]);
    let config = repo.config_path().display().to_string();
    let server = Server::start_wrapped(
        &["prlimit", "--nofile=512", "--"],
        &["--config_path", &config],
    );
    server.wait_loaded();
    let mut open = server.predict_client().await;
    open.predict(add_request()).await.unwrap();
    // More connections than descriptors left: the kernel completes them, accept() fails EMFILE.
    let started = Instant::now();
    let flood: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(&server.grpc_addr).unwrap())
        .collect();
    let log_line = "cannot accept gRPC connections";
    common::eventually("the accept failure is reported", FAIL_SAFE, async || {
        server.log_text().contains(log_line).then_some(())
    })
    .await;
    // The connection opened before keeps being served meanwhile.
    for _ in 0..20 {
        open.predict(add_request()).await.unwrap();
    }
    let reports = server.log_text().matches(log_line).count() as u64;
    let intervals = started.elapsed().as_secs() / 10 + 1;
    assert!(
        reports <= intervals,
        "{reports} reports in {:?}: one per 10 s at most",
        started.elapsed()
    );
    drop(flood);
    // Descriptors free again: new connections are accepted.
    let mut fresh = server.predict_client().await;
    fresh.predict(add_request()).await.unwrap();
}

/// Whether the kernel still has a TCP socket from local port `local` to remote port `remote`
/// (/proc/net/tcp lists `address:port` in hex).
fn socket_exists(local: u16, remote: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 2 && port(fields[1]) == Some(local) && port(fields[2]) == Some(remote)
    })
}

/// A REST client that asks for a 4 MB answer and never reads it: once the unread data has
/// waited `--send_timeout_seconds`, the server resets the connection (its buffers are freed)
/// and serves everyone else as before.
#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_send_timeout() {
    use std::os::fd::AsRawFd;
    let repo = Repo::new(&[("dynamic", "")]);
    let server = Server::with_config(&repo, &["--send_timeout_seconds", "1"]);
    server.wait_loaded();
    let rows = 125_000;
    let data = vec!["0"; rows * 8].join(",");
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[{rows},8],"datatype":"FP32","data":[{data}]}}]}}"#
    );
    let mut stalled = TcpStream::connect(&server.rest_addr).unwrap();
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt with an int option value on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            stalled.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    write!(
        stalled,
        "POST /v2/models/dynamic/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Never read: the server's answer fills this socket's small buffer and then waits. A
    // timed-out socket is dropped without a reset (the kernel assumes the peer unreachable),
    // so the server's side is what shows it.
    let (server_port, client_port) = (
        stalled.peer_addr().unwrap().port(),
        stalled.local_addr().unwrap().port(),
    );
    assert!(socket_exists(server_port, client_port));
    let deadline = Instant::now() + FAIL_SAFE;
    while socket_exists(server_port, client_port) {
        assert!(
            Instant::now() < deadline,
            "the server kept the connection of a client that reads nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server serves as before.
    let mut client = TcpStream::connect(&server.rest_addr).unwrap();
    write!(
        client,
        "GET /v2/health/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut client)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A raw HTTP/2 connection to `addr` whose streams start with `window` bytes of flow-control
/// window (the client's SETTINGS_INITIAL_WINDOW_SIZE), and the task that drives it: it ends
/// when the connection closes.
async fn http2_connection(
    addr: std::net::SocketAddr,
    window: u32,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(window)
            .adaptive_window(false)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

/// A gRPC POST of `method` with `message` (protobuf bytes) in one length-prefixed frame.
fn grpc_call(method: &str, message: &[u8]) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    hyper::Request::post(format!("http://vinoserve{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap()
}

async fn server_metadata(url: String) -> String {
    use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    let mut client = GrpcInferenceServiceClient::connect(url).await.unwrap();
    let request = vinoserve::proto::inference::ServerMetadataRequest {};
    client
        .server_metadata(request)
        .await
        .unwrap()
        .into_inner()
        .name
}

/// A gRPC client that grants its answer no HTTP/2 window (it reads nothing at the HTTP/2 level
/// while its TCP stack acknowledges and PINGs are answered, so TCP_USER_TIMEOUT never fires)
/// is disconnected after `--send_timeout_seconds`, counted, and other clients are served
/// meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_grants_no_window_is_disconnected_after_the_send_timeout() {
    let server =
        common::in_process::InProcess::start(&[("m", &[1])], &["--send_timeout_seconds", "1"]);
    let metrics_url = server.rest_url("/metrics");
    let timeouts = || async {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let samples = common::metrics_text::parse(&text);
        common::metrics_text::value(&samples, "vinoserve_grpc_send_timeouts_total", &[])
    };
    let before = timeouts().await;
    let (mut stalled, connection) = http2_connection(server.grpc_addr, 0).await;
    let answer = stalled
        .send_request(grpc_call(
            "/inference.GRPCInferenceService/ServerMetadata",
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the headers need no window");
    assert_eq!(server_metadata(server.grpc_url()).await, "vinoserve");
    let _closed = tokio::time::timeout(FAIL_SAFE, connection)
        .await
        .expect("the server kept the connection of a client that grants no window");
    assert_eq!(timeouts().await, before + 1.0);
    assert_eq!(server_metadata(server.grpc_url()).await, "vinoserve");
    drop(answer);
}

/// A client that takes a 5 MiB answer 1 MiB at a time, pausing less than the send timeout
/// between them, gets all of it, although the whole transfer lasts longer than the timeout:
/// what is timed is the wait for each slice, not the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_reads_slowly_but_steadily_gets_its_whole_answer() {
    use http_body_util::BodyExt;
    use prost::Message;
    const MIB: usize = 1 << 20;
    const PAUSE: Duration = Duration::from_millis(700);
    let timeout = Duration::from_secs(2);
    let model = common::in_process::fixture("dynamic");
    let server = common::in_process::InProcess::serve(
        &[model],
        &["--send_timeout_seconds", &timeout.as_secs().to_string()],
    );
    let rows = 5 * MIB / (8 * 4);
    let request = common::requests::infer(
        "dynamic",
        "",
        vec![common::requests::input("x", "FP32", &[rows as i64, 8])],
        vec![vec![0u8; rows * 8 * 4]],
    );
    let (mut slow, _connection) = http2_connection(server.grpc_addr, MIB as u32).await;
    let started = Instant::now();
    let answer = slow
        .send_request(grpc_call(
            "/inference.GRPCInferenceService/ModelInfer",
            &request.encode_to_vec(),
        ))
        .await
        .unwrap();
    let mut body = answer.into_body();
    let (mut received, mut paused_at, mut trailers) = (0usize, 0usize, None);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the server dropped a client that keeps reading");
        match frame.into_data() {
            Ok(data) => received += data.len(),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
        // Reading released window as it went; hold the next MiB's back for a while.
        if received >= paused_at + MIB {
            paused_at = received;
            tokio::time::sleep(PAUSE).await;
        }
    }
    let status = trailers.as_ref().and_then(|t| t.get("grpc-status"));
    assert_eq!(status.map(|s| s.to_str().unwrap()), Some("0"));
    assert!(received > 5 * MIB, "{received} bytes");
    assert!(
        started.elapsed() > timeout,
        "the transfer outlasted the timeout"
    );
}
