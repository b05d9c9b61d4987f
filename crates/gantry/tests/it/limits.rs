//! `[limits]`: connections past a cap are closed, a slow request head and idle connections
//! time out, and the server keeps serving everyone else.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Options, Server};

fn start(limits: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, format!("[limits]\n{limits}")).unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    (server, dir)
}

/// Reads until the server closes the connection; how long that took, or `None` when it was
/// still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return Some(started.elapsed())
            }
            Err(_) => return None,
        }
        if started.elapsed() > limit {
            return None;
        }
    }
}

/// One request on its own connection, as raw HTTP/1.1; the status line's code.
fn raw_get(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

fn closed_count(server: &Server, listener: &str, reason: &str) -> u64 {
    let text = server.http().get("/metrics").text;
    let key =
        format!("gantry_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[test]
fn a_slow_request_head_and_an_idle_connection_are_closed() {
    let (server, _dir) = start("header_read_timeout_secs = 2\n");
    let connected = Instant::now();
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    for stream in [&mut slow, &mut idle] {
        closed_within(stream, Duration::from_secs(15)).expect("closed");
        let after = connected.elapsed();
        assert!(after >= Duration::from_secs(1), "closed after {after:?}");
    }
    assert_eq!(raw_get(&server.addr, "/healthz"), Some(200));
    assert!(closed_count(&server, "http", "idle") >= 1);
}

#[test]
fn http_connections_past_the_cap_are_closed_until_others_leave() {
    let (server, _dir) = start("max_connections = 3\n");
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(&server.addr).unwrap();
    let took = closed_within(&mut extra, Duration::from_secs(10)).expect("closed at once");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(raw_get(&server.addr, "/healthz"), None, "no room yet");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw_get(&server.addr, "/healthz") != Some(200) {
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed_count(&server, "http", "limit") >= 2);
}

#[test]
fn metrics_connections_past_the_cap_or_idle_are_closed() {
    let (server, _dir) = start("metrics_max_connections = 2\nmetrics_idle_timeout_secs = 6\n");
    let status = server.http().get("/api/v1/status").body;
    let graphite = status["listeners"]["graphite"]
        .as_str()
        .unwrap()
        .to_string();
    let connected = Instant::now();
    let mut first = TcpStream::connect(&graphite).unwrap();
    let mut second = TcpStream::connect(&graphite).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(&graphite).unwrap();
    let took = closed_within(&mut third, Duration::from_secs(10)).expect("closed at once");
    // Well before the idle timeout, which would close it too.
    assert!(took < Duration::from_secs(4), "{took:?}");
    // The two it holds send nothing, and are closed after the idle timeout.
    for stream in [&mut first, &mut second] {
        closed_within(stream, Duration::from_secs(15)).expect("closed when idle");
        let after = connected.elapsed();
        assert!(after >= Duration::from_secs(5), "closed after {after:?}");
    }
    // Then a sender is read as before.
    let mut sender = TcpStream::connect(&graphite).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    writeln!(sender, "limits.test.value 42 {now}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = server.http().get("/metrics/find?query=limits.test.*").body;
        if found.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the point never arrived: {found}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(closed_count(&server, "graphite", "limit"), 1);
    assert_eq!(closed_count(&server, "graphite", "idle"), 2);
}

#[test]
fn a_change_stream_nobody_reads_is_closed() {
    let (server, _dir) = start("sse_write_stall_secs = 1\n");
    let mut reader = TcpStream::connect(&server.addr).unwrap();
    write!(
        reader,
        "GET /api/v1/changes/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        server.admin_token()
    )
    .unwrap();
    // Never read: the changes below fill the socket buffers, and the server's writes wait.
    let description = "x".repeat(60 * 1024);
    let http = server.http();
    let deadline = Instant::now() + Duration::from_secs(60);
    while closed_count(&server, "http", "stalled") == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled stream was never closed"
        );
        for _ in 0..20 {
            let reply = http.post(
                "/api/v1/changes",
                serde_json::json!({"kind": "note", "summary": "filler", "description": description}),
            );
            assert_eq!(reply.status, 201, "{}", reply.text);
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    // Everyone else is still served.
    assert_eq!(raw_get(&server.addr, "/healthz"), Some(200));
}

#[test]
fn a_request_body_that_stops_arriving_fails() {
    let (server, _dir) = start("body_read_timeout_secs = 1\n");
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    write!(
        slow,
        "POST /api/v1/changes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"kind\":",
        server.admin_token()
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 4096];
    let n = slow
        .read(&mut answer)
        .expect("an answer before the read timeout");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(10));
}
