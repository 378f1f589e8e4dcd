//! Unit tests of `admin`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream as StdStream;
use std::time::Instant;

/// Answers `/metrics` and `/healthz`, 404 otherwise.
fn test_handler() -> Handler {
    Arc::new(|request: &AdminRequest<'_>| match request.path {
        "/metrics" => HttpResponse::new(200, "text/plain; version=0.0.4", "strata_up 1\n"),
        "/healthz" => HttpResponse::text(200, "ok\n"),
        "/echo-thread" => HttpResponse::text(200, std::thread::current().name().unwrap_or("?")),
        "/panic" => panic!("handler panics on purpose"),
        "/bad-status" => HttpResponse::text(1000, "x"),
        "/big" => HttpResponse::text(200, "x".repeat(BIG)),
        "/evil-type" => HttpResponse::new(200, "text/plain\r\nX-Evil: 1", ""),
        path if path.starts_with("/status/") => {
            HttpResponse::text(path["/status/".len()..].parse().unwrap(), "down\n")
        }
        path => HttpResponse::text(404, format!("no such path: {path}\n")),
    })
}

/// Size of `/big`: more than the socket buffers hold, so it is written in several turns.
const BIG: usize = 8 << 20;

fn bind() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn server() -> AdminHandle {
    start(bind(), test_handler(), 4).unwrap()
}

fn connect(addr: SocketAddr) -> StdStream {
    let stream = StdStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `raw` and returns everything the server wrote before closing.
fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[derive(Debug)]
struct Parsed {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse(raw: &str) -> Parsed {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("no blank line in response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("malformed header");
            (n.to_owned(), v.to_owned())
        })
        .collect();
    Parsed {
        status_line,
        headers,
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, target: &str) -> Parsed {
    parse(&exchange(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    ))
}

/// `raw` without its `Date` header line, after checking there is one (hyper adds it; its value
/// changes every second).
fn without_date(raw: &str) -> String {
    let start = raw.find("\r\nDate: ").expect("no Date header") + 2;
    let end = start + raw[start..].find("\r\n").unwrap() + 2;
    assert!(raw[start..end].ends_with(" GMT\r\n"), "{raw:?}");
    format!("{}{}", &raw[..start], &raw[end..])
}

#[test]
fn get_metrics_returns_handler_body_with_exact_framing() {
    let admin = server();
    let raw = exchange(
        admin.addr(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n",
    );
    assert_eq!(
        without_date(&raw),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: 12\r\nConnection: close\r\n\r\nstrata_up 1\n"
    );
    admin.shutdown();
}

#[test]
fn healthz_uses_text_plain() {
    let admin = server();
    let r = get(admin.addr(), "/healthz");
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Content-Type"), Some(TEXT_PLAIN));
    assert_eq!(r.header("Content-Length"), Some("3"));
    assert_eq!(r.body, "ok\n");
}

#[test]
fn query_and_fragment_are_stripped() {
    let admin = server();
    for target in ["/metrics?name[]=up", "/metrics#top", "/metrics?a=b#c"] {
        let r = get(admin.addr(), target);
        assert_eq!(r.status_line, "HTTP/1.1 200 OK", "target {target}");
        assert_eq!(r.body, "strata_up 1\n", "target {target}");
    }
}

#[test]
fn absolute_form_target_is_accepted() {
    let admin = server();
    let r = get(admin.addr(), "http://localhost:9100/metrics?x=1");
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body, "strata_up 1\n");
    let r = get(admin.addr(), "HTTP://localhost");
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(r.body, "no such path: /\n");
}

#[test]
fn head_has_headers_but_no_body() {
    let admin = server();
    let raw = exchange(admin.addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(raw.ends_with("\r\n\r\n"), "body sent for HEAD: {raw:?}");
    let r = parse(&raw);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Content-Length"), Some("12"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4"));
    assert_eq!(r.body, "");
}

#[test]
fn other_methods_get_405_with_allow() {
    let admin = server();
    // The body is never read as a request; the lingering close keeps it from resetting the
    // connection before the client has the response.
    let raw = exchange(
        admin.addr(),
        b"POST /metrics HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
    );
    let r = parse(&raw);
    assert_eq!(r.status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str())
    );
    // Methods are case-sensitive.
    let r = parse(&exchange(admin.addr(), b"get /metrics HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status_line, "HTTP/1.1 405 Method Not Allowed");
}

#[test]
fn garbage_request_line_is_400() {
    let admin = server();
    for raw in [
        &b"hello\r\n\r\n"[..],
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/1.1 extra\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\n\r\n",
        b"GET ftp://h/metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET /metrics HTTP/1.11\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics\tHTTP/1.1\r\n\r\n",
        b"G(T /metrics HTTP/1.1\r\n\r\n",
        b"GET /m\xffetrics HTTP/1.1\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let r = parse(&exchange(admin.addr(), raw));
        assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request", "request {raw:?}");
        assert_eq!(r.header("Connection"), Some("close"), "request {raw:?}");
    }
}

/// A head cut short, or blank lines and nothing else, is no request: the connection is closed
/// without a response, as when a client connects and leaves. (The hand-written server answered
/// 400 to both.)
#[test]
fn head_closed_before_its_end_gets_no_response() {
    let admin = server();
    for raw in [&b"GET /metrics HTTP/1.1\r\n"[..], b"\r\n\r\n"] {
        let mut stream = connect(admin.addr());
        stream.write_all(raw).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert_eq!(out, "", "request {raw:?}");
    }
    assert_eq!(get(admin.addr(), "/healthz").body, "ok\n");
}

#[test]
fn client_that_half_closes_after_its_request_gets_the_whole_response() {
    let admin = server();
    let mut stream = connect(admin.addr());
    stream.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // The server fills the socket buffers and has to wait for the client to read.
    std::thread::sleep(Duration::from_millis(200));
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let r = parse(&String::from_utf8(out).unwrap());
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body.len(), BIG);
}

#[test]
fn one_request_per_connection() {
    let admin = server();
    // A second, pipelined request is not answered: the connection closes after the first.
    let raw = exchange(
        admin.addr(),
        b"GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
    );
    let r = parse(&raw);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.body, "ok\n");
}

#[test]
fn bare_newlines_are_accepted() {
    let admin = server();
    let r = parse(&exchange(
        admin.addr(),
        b"\r\nGET /healthz HTTP/1.1\nHost: x\n\n",
    ));
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body, "ok\n");
    // hyper answers an HTTP/1.0 request in HTTP/1.0 (where closing is the default, so there is
    // no `Connection: close`); the hand-written server always said HTTP/1.1.
    let r = parse(&exchange(
        admin.addr(),
        b"\r\nGET /healthz HTTP/1.0\nHost: x\n\n",
    ));
    assert_eq!(r.status_line, "HTTP/1.0 200 OK");
    assert_eq!(r.body, "ok\n");
}

#[test]
fn oversized_head_is_431() {
    let admin = server();
    let mut raw = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 9 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    let r = parse(&exchange(admin.addr(), &raw));
    assert_eq!(
        r.status_line,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(r.header("Connection"), Some("close"));
}

#[test]
fn head_of_exactly_the_limit_is_accepted() {
    let admin = server();
    let mut raw = b"GET /healthz HTTP/1.1\r\nX-Pad: ".to_vec();
    let pad = 8 * 1024 - raw.len() - 4;
    raw.extend(std::iter::repeat_n(b'a', pad));
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw.len(), 8 * 1024);
    let r = parse(&exchange(admin.addr(), &raw));
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    // One byte more is over the limit.
    raw.insert(30, b'a');
    let r = parse(&exchange(admin.addr(), &raw));
    assert_eq!(
        r.status_line,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

#[test]
fn handler_404_is_passed_through() {
    let admin = server();
    let r = get(admin.addr(), "/nope?x=1");
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(r.body, "no such path: /nope\n");
    assert_eq!(r.header("Content-Length"), Some("20"));
}

#[test]
fn handler_runs_on_the_named_thread() {
    let admin = server();
    assert_eq!(get(admin.addr(), "/echo-thread").body, "strata-admin");
}

#[test]
fn handler_panic_is_500_and_server_survives() {
    let admin = server();
    let r = get(admin.addr(), "/panic");
    assert_eq!(r.status_line, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(get(admin.addr(), "/healthz").body, "ok\n");
}

#[test]
fn invalid_handler_status_becomes_500() {
    let admin = server();
    let r = get(admin.addr(), "/bad-status");
    assert_eq!(r.status_line, "HTTP/1.1 500 Internal Server Error");
}

#[test]
fn many_sequential_requests_are_all_answered() {
    let admin = start(bind(), test_handler(), 1).unwrap();
    for i in 0..50 {
        let r = get(admin.addr(), &format!("/metrics?i={i}"));
        assert_eq!(r.status_line, "HTTP/1.1 200 OK", "request {i}");
        assert_eq!(r.body, "strata_up 1\n", "request {i}");
    }
}

#[test]
fn shutdown_is_prompt_and_closes_the_port() {
    let admin = server();
    let addr = admin.addr();
    assert_eq!(get(addr, "/healthz").body, "ok\n");
    // An idle connection in progress must not hold shutdown up.
    let _idle = connect(addr);
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    admin.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "shutdown took {took:?}");
    let err = StdStream::connect(addr).expect_err("port still accepting after shutdown");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn shutdown_is_prompt_while_all_slots_are_busy() {
    let admin = start(bind(), test_handler(), 1).unwrap();
    let addr = admin.addr();
    // The accept loop now waits for a slot, not for a connection.
    let _idle = connect(addr);
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    admin.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "shutdown took {took:?}");
    assert!(StdStream::connect(addr).is_err());
}

#[test]
fn server_lingers_reading_after_the_response() {
    // Closing a socket with unread input makes the kernel send a reset, which on a real
    // network can destroy the response in flight. Loopback does not lose it, so check the
    // cause instead: after its response, the server still accepts (and discards) input
    // rather than resetting the connection.
    let admin = server();
    let mut stream = connect(admin.addr());
    stream
        .write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\npart one")
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let r = parse(&String::from_utf8(out).unwrap());
    assert_eq!(r.status_line, "HTTP/1.1 405 Method Not Allowed");
    for _ in 0..3 {
        stream
            .write_all(b"more of the body")
            .expect("connection reset right after the response");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn default_limits_are_as_documented() {
    assert_eq!(Limits::DEFAULT.head_bytes, 8192);
    assert_eq!(Limits::DEFAULT.head_timeout, Duration::from_secs(5));
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let admin = server();
    let addr = admin.addr();
    drop(admin);
    assert!(StdStream::connect(addr).is_err());
}

#[test]
fn silent_client_is_dropped_after_head_timeout() {
    let limits = Limits {
        head_timeout: Duration::from_millis(200),
        ..Limits::DEFAULT
    };
    let admin = start_with(bind(), test_handler(), 4, limits).unwrap();
    let mut stream = connect(admin.addr());
    let started = Instant::now();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    assert!(out.is_empty(), "unexpected response {out:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150),
        "dropped too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "dropped too late: {took:?}");
}

#[test]
fn slow_client_is_dropped_after_total_head_timeout() {
    let limits = Limits {
        head_timeout: Duration::from_millis(300),
        ..Limits::DEFAULT
    };
    let admin = start_with(bind(), test_handler(), 4, limits).unwrap();
    let mut stream = connect(admin.addr());
    let started = Instant::now();
    // One byte every 50 ms: never idle for long, but never finishing the head either. Once
    // the server has closed, a write fails (the peer answers it with a reset).
    let mut gave_up = None;
    while started.elapsed() < Duration::from_secs(3) {
        if stream.write_all(b"G").is_err() {
            gave_up = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = gave_up.expect("server kept a trickling client beyond the head timeout");
    assert!(
        took >= Duration::from_millis(250),
        "dropped too early: {took:?}"
    );
}

#[test]
fn client_that_does_not_read_the_response_is_dropped() {
    let limits = Limits {
        head_timeout: Duration::from_millis(200),
        write_timeout: Duration::from_millis(200),
        ..Limits::DEFAULT
    };
    let admin = start_with(bind(), test_handler(), 1, limits).unwrap();
    // Takes the only slot with a response too large for the socket buffers, and never reads.
    let mut stalled = connect(admin.addr());
    stalled.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let r = get(admin.addr(), "/healthz");
    assert_eq!(r.body, "ok\n");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "served too early: {took:?}"
    );
    let mut out = Vec::new();
    let _ = stalled.read_to_end(&mut out);
    assert!(out.len() < BIG, "the stalled client got its whole response");
}

#[test]
fn connections_beyond_the_limit_wait_instead_of_being_refused() {
    let admin = start(bind(), test_handler(), 1).unwrap();
    let addr = admin.addr();
    // Holds the only slot by sending nothing.
    let idle = connect(addr);
    std::thread::sleep(Duration::from_millis(50));
    let mut waiting = connect(addr);
    waiting.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let err = waiting
        .read(&mut buf)
        .expect_err("served while the only slot was busy");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    // Freeing the slot lets the waiting request through.
    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = String::new();
    waiting.read_to_string(&mut out).unwrap();
    assert_eq!(parse(&out).body, "ok\n");
}

#[test]
fn zero_max_connections_still_serves() {
    let admin = start(bind(), test_handler(), 0).unwrap();
    assert_eq!(get(admin.addr(), "/healthz").body, "ok\n");
}

#[test]
fn request_path_forms() {
    let path = |target: &str| request_path(&target.parse().unwrap()).map(str::to_owned);
    assert_eq!(path("/metrics").as_deref(), Some("/metrics"));
    assert_eq!(path("/metrics?x=1").as_deref(), Some("/metrics"));
    assert_eq!(path("/metrics#f").as_deref(), Some("/metrics"));
    assert_eq!(path("/?x").as_deref(), Some("/"));
    assert_eq!(path("http://h:1/metrics?x").as_deref(), Some("/metrics"));
    assert_eq!(path("https://h/healthz").as_deref(), Some("/healthz"));
    assert_eq!(path("HTTP://h/healthz").as_deref(), Some("/healthz"));
    assert_eq!(path("http://h").as_deref(), Some("/"));
    assert_eq!(path("http://h?x").as_deref(), Some("/"));
    assert_eq!(path("ftp://h/metrics"), None);
    assert_eq!(path("metrics"), None);
    assert_eq!(path("h:80"), None);
    assert_eq!(path("*"), None);
    // Neither is a URI hyper would hand over.
    assert!("http:///metrics".parse::<Uri>().is_err());
    assert!("h\u{e9}".parse::<Uri>().is_err());
}

#[test]
fn head_of_an_error_status_keeps_its_length() {
    let admin = server();
    let raw = exchange(admin.addr(), b"HEAD /status/503 HTTP/1.1\r\n\r\n");
    assert_eq!(
        without_date(&raw),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn unknown_status_has_empty_reason() {
    let admin = server();
    let r = get(admin.addr(), "/status/299");
    assert_eq!(r.status_line, "HTTP/1.1 299 ");
    assert_eq!(r.body, "down\n");
}

#[test]
fn crlf_in_content_type_is_replaced() {
    let admin = server();
    let raw = exchange(admin.addr(), b"GET /evil-type HTTP/1.1\r\n\r\n");
    assert!(!raw.contains("X-Evil"), "{raw:?}");
    assert_eq!(parse(&raw).header("Content-Type"), Some(TEXT_PLAIN));
}

#[test]
fn reason_phrases() {
    let admin = server();
    for (status, reason) in [
        (200, "OK"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
    ] {
        let r = get(admin.addr(), &format!("/status/{status}"));
        assert_eq!(r.status_line, format!("HTTP/1.1 {status} {reason}"));
    }
}

mod bearer;
