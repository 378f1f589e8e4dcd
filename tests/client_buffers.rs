//! Clients that write before they read, and clients that never read: strata keeps reading a
//! client's requests while its replies wait (no pipeline deadlock, as with Redis), and bounds
//! what one client can make it hold with `limits.client_output_buffer_limit` and
//! `limits.client_query_buffer_limit`, disconnecting and counting the clients past them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{encode_cmd, poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// Sends `requests` from a thread of its own (so a server that stops reading cannot block the
/// test), then reads exactly `reply_bytes` bytes of replies within `deadline`; returns them.
fn write_all_then_read(
    addr: &str,
    requests: Vec<u8>,
    reply_bytes: usize,
    deadline: Duration,
) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&requests).is_ok());
    let end = Instant::now() + deadline;
    let mut got = Vec::with_capacity(reply_bytes);
    let mut chunk = vec![0u8; 1 << 20];
    while got.len() < reply_bytes {
        assert!(
            Instant::now() < end,
            "only {} of {reply_bytes} reply bytes after {deadline:?}: the pipeline is stuck",
            got.len()
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed after {} reply bytes", got.len()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    assert!(
        sender.join().unwrap(),
        "the writer could not send everything"
    );
    got
}

/// `count` × (SET big:i <size bytes>, GET big:i), all sent before any reply is read, as
/// redis-py's pipelines do; checks every reply.
fn set_get_pipeline(addr: &str, prefix: &str, count: usize, size: usize) {
    let value = vec![b'x'; size];
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}:{i}");
        requests.extend(encode_cmd(&[b"SET".as_slice(), key.as_bytes(), &value]));
        requests.extend(encode_cmd(&[b"GET".as_slice(), key.as_bytes()]));
        expected.extend_from_slice(b"+OK\r\n");
        expected.extend_from_slice(format!("${size}\r\n").as_bytes());
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"\r\n");
    }
    let got = write_all_then_read(addr, requests, expected.len(), DEADLINE * 3);
    assert!(
        got == expected,
        "replies differ from the expected SET/GET replies"
    );
}

#[test]
fn pipelines_written_before_reading_complete() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let addr = strata.addr().to_string();
    // redis-py: 400 × (SET + GET of 64 KiB) in one pipeline = 26 MB each way.
    set_get_pipeline(&addr, "big", 400, 64 * 1024);
    // 2000 × (SET + GET of 4 KiB).
    set_get_pipeline(&addr, "mid", 2000, 4096);
    // And the same in RESP3, whose replies come from RESP3 node connections.
    let mut c = RawClient::connect(&addr);
    c.send_cmd(&["HELLO", "3"]);
    skip_hello_3_reply(&mut c);
    let value = "y".repeat(64 * 1024);
    let mut batch = Vec::new();
    for i in 0..400 {
        batch.extend(encode_cmd(&["SET", &format!("r3:{i}"), &value]));
        batch.extend(encode_cmd(&["GET", &format!("r3:{i}")]));
    }
    let mut writer = c.try_clone_stream();
    let sender = std::thread::spawn(move || writer.write_all(&batch).is_ok());
    c.set_read_timeout(DEADLINE);
    for _ in 0..400 {
        assert_eq!(c.read_reply(), Resp::ok());
        assert_eq!(c.read_reply(), Resp::bulk(&value));
    }
    assert!(sender.join().unwrap());
}

/// Reads HELLO 3's reply (a map ending with the empty `modules` array), which the test
/// client cannot parse.
fn skip_hello_3_reply(c: &mut RawClient) {
    let mut seen = Vec::new();
    while !seen.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        seen.extend(c.read_exact_bytes(1));
        assert!(
            seen.len() < 4096,
            "no HELLO 3 reply: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    assert!(
        seen.starts_with(b"%7\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
}

fn info_field(c: &mut RawClient, field: &str) -> u64 {
    u64::try_from(common::layers::stats_field(c, field)).unwrap()
}

#[test]
fn a_client_that_never_reads_is_cut_off_at_the_hard_limit() {
    const HARD: u64 = 16 << 20;
    const VALUE: usize = 1 << 20;
    let nodes = RedisNode::start_many(2);
    // The binary, so its memory can be read from /proc.
    let strata = Strata::builder(&nodes)
        .workers(1)
        .section("timeouts: {connect: 500ms, request: 5s}")
        .section("limits: {client_output_buffer_limit: {normal: {hard: 16mb, soft: 0, soft_seconds: 0}}}")
        .spawn();
    let addr = strata.addr();
    let mut other = RawClient::connect(&addr);
    let value = "v".repeat(VALUE);
    assert_eq!(other.call(&["SET", "big", &value]), Resp::ok());
    assert_eq!(other.call(&["GET", "big"]), Resp::bulk(&value));
    let baseline = strata.memory("VmRSS");

    // 300 × GET of 1 MiB, never read: 300 MB of replies against a 16 MB limit.
    let mut greedy = RawClient::connect(&addr);
    let mut requests = Vec::new();
    for _ in 0..300 {
        requests.extend(encode_cmd(&["GET", "big"]));
    }
    greedy.send(&requests);
    poll_until(DEADLINE, "the greedy client to be disconnected", || {
        (info_field(&mut other, "client_output_buffer_limit_disconnections") == 1).then_some(())
    });
    // The others are served all along.
    assert_eq!(other.call(&["SET", "small", "1"]), Resp::ok());
    assert_eq!(other.call(&["GET", "small"]), Resp::bulk("1"));
    // The greedy client got at most what the socket buffers held, then the close.
    let mut stream = greedy.try_clone_stream();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut total = 0u64;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(
        total < 300 * VALUE as u64,
        "the greedy client got every reply: {total} bytes"
    );
    // strata's peak memory: its resident set before, plus the client's limit, plus slack for
    // the replies read from the node and encoded in one batch (documented in docs/configuration.md).
    let peak = strata.memory("VmHWM");
    let slack = 24 << 20;
    assert!(
        peak <= baseline + HARD + slack,
        "peak RSS {peak} above baseline {baseline} + limit {HARD} + {slack}"
    );
}

#[test]
fn a_client_past_the_soft_limit_for_its_seconds_is_cut_off() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section(
            "limits: {client_output_buffer_limit: {normal: {hard: 0, soft: 2mb, soft_seconds: 1}}}",
        )
        .start();
    let addr = strata.addr().to_string();
    let mut other = RawClient::connect(&addr);
    let value = "s".repeat(1 << 20);
    assert_eq!(other.call(&["SET", "big", &value]), Resp::ok());
    let mut slow = RawClient::connect(&addr);
    let mut requests = Vec::new();
    for _ in 0..40 {
        requests.extend(encode_cmd(&["GET", "big"]));
    }
    slow.send(&requests);
    let started = Instant::now();
    poll_until(DEADLINE, "the slow client to be disconnected", || {
        (info_field(&mut other, "client_output_buffer_limit_disconnections") == 1).then_some(())
    });
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "cut off before its soft_seconds"
    );
}

#[test]
fn a_request_past_the_query_buffer_limit_is_cut_off() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section("limits: {max_bulk_len: 1048576, client_query_buffer_limit: 1mb}")
        .start();
    let addr = strata.addr().to_string();
    let mut c = RawClient::connect(&addr);
    // MSET with a complete 1 MB argument and a second one still arriving: over 1 MB unparsed.
    let part = "q".repeat(1 << 20);
    let mut bytes = format!(
        "*5\r\n$4\r\nMSET\r\n$1\r\na\r\n${}\r\n{part}\r\n$1\r\nb\r\n$1000\r\n",
        part.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&[b'r'; 500]);
    c.send(&bytes);
    c.expect_closed();
    let mut other = RawClient::connect(&addr);
    assert_eq!(
        info_field(&mut other, "client_query_buffer_limit_disconnections"),
        1
    );
    // Requests below the limit are served.
    assert_eq!(other.call(&["SET", "a", &"s".repeat(1000)]), Resp::ok());
}

#[test]
fn limits_are_checked_and_reported_by_the_config() {
    let base = "nodes:\n  - {id: a, addr: '127.0.0.1:1'}\n";
    let bad = [
        (
            "limits: {client_output_buffer_limit: {normal: {hard: 1mb, soft: 2mb, soft_seconds: 1}}}",
            "soft (2mb) must not be above hard (1mb)",
        ),
        (
            "limits: {client_output_buffer_limit: {pubsub: {hard: 1kb, soft: 0, soft_seconds: 0}}}",
            "limits.client_output_buffer_limit.pubsub.hard: must be 0 (no limit) or at least 16kb",
        ),
        (
            "limits: {client_query_buffer_limit: 10kb}",
            "limits.client_query_buffer_limit: must be at least 1mb",
        ),
        (
            "limits: {client_query_buffer_limit: 12xb}",
            "expected a size in bytes",
        ),
    ];
    for (yaml, want) in bad {
        let err = strata::config::Config::parse(&format!("{base}{yaml}\n"), "t")
            .err()
            .unwrap_or_else(|| panic!("accepted {yaml}"))
            .to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
    let settings = strata::config::Config::parse(
        &format!("{base}limits: {{client_output_buffer_limit: {{pubsub: {{hard: 4mb, soft: 1mb, soft_seconds: 5}}}}}}\n"),
        "t",
    )
    .unwrap();
    let limits = settings.config.limits.client_output_buffer_limit;
    assert_eq!(limits.pubsub.hard.bytes(), 4 << 20);
    assert_eq!(
        limits.normal.hard.bytes(),
        256 << 20,
        "normal keeps its default"
    );
}

#[test]
fn a_reloaded_output_limit_applies_to_open_connections() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes).start_with_file();
    let addr = strata.addr().to_string();
    // Opened before the reload, under the default 256mb limit.
    let mut slow = RawClient::connect(&addr);
    let mut other = RawClient::connect(&addr);
    assert_eq!(
        other.call(&["SET", "big", &"r".repeat(1 << 20)]),
        Resp::ok()
    );
    let yaml = std::fs::read_to_string(strata.config_path()).unwrap();
    std::fs::write(
        strata.config_path(),
        format!("{yaml}limits: {{client_output_buffer_limit: {{normal: {{hard: 4mb, soft: 0, soft_seconds: 0}}}}}}\n"),
    )
    .unwrap();
    let reload = other.call(&["STRATA", "RELOAD"]);
    assert!(!reload.is_error(), "{reload:?}");
    let mut requests = Vec::new();
    for _ in 0..64 {
        requests.extend(encode_cmd(&["GET", "big"]));
    }
    slow.send(&requests);
    poll_until(
        DEADLINE,
        "the slow client to be cut off at the reloaded limit",
        || (info_field(&mut other, "client_output_buffer_limit_disconnections") == 1).then_some(()),
    );
}
