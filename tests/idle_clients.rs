//! `limits.idle_timeout` over real Redis nodes, with Redis 7.0's rules (`clientsCronHandleTimeout`):
//! a client with no traffic for longer than the timeout is closed and counted; a client that
//! keeps talking, one blocked in BLPOP and one subscribed stay; one inside MULTI does not; a
//! reload turns the timeout on for connections already open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

fn info_field(c: &mut RawClient, field: &str) -> u64 {
    u64::try_from(common::layers::stats_field(c, field)).unwrap()
}

/// Whether strata has closed `stream` (EOF or reset), without waiting.
fn is_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected bytes from strata"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn idle_clients_are_closed_past_the_timeout_except_blocked_and_subscribed_ones() {
    const TIMEOUT: Duration = Duration::from_millis(800);
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section("limits: {idle_timeout: 800ms}")
        .start();

    let mut idle = RawClient::connect(&strata.addr().to_string());
    assert_eq!(idle.call(&["PING"]), Resp::status("PONG"));
    let idle_since = Instant::now();
    let mut in_multi = RawClient::connect(&strata.addr().to_string());
    assert_eq!(in_multi.call(&["MULTI"]), Resp::ok());
    let mut blocked = RawClient::connect(&strata.addr().to_string());
    blocked.send_cmd(&["BLPOP", "idle:list", "0"]);
    let mut subscribed = RawClient::connect(&strata.addr().to_string());
    assert_eq!(
        subscribed.call(&["SUBSCRIBE", "idle:channel"]),
        Resp::Array(vec![
            Resp::bulk("subscribe"),
            Resp::bulk("idle:channel"),
            Resp::Int(1)
        ])
    );
    let mut talker = RawClient::connect(&strata.addr().to_string());

    // The talker pings more often than the timeout while the idle client is closed.
    let idle_stream = idle.try_clone_stream();
    let multi_stream = in_multi.try_clone_stream();
    let closed_after = poll_until(DEADLINE, "the idle client to be closed", || {
        assert_eq!(talker.call(&["PING"]), Resp::status("PONG"));
        std::thread::sleep(Duration::from_millis(100));
        is_closed(&idle_stream).then(|| idle_since.elapsed())
    });
    assert!(
        closed_after >= TIMEOUT,
        "closed after {closed_after:?}, before the timeout of {TIMEOUT:?}"
    );
    poll_until(DEADLINE, "the client inside MULTI to be closed", || {
        is_closed(&multi_stream).then_some(())
    });
    // Well past the timeout (the talker talking on), the blocked and subscribed clients are
    // still served.
    let until = Instant::now() + TIMEOUT * 2;
    while Instant::now() < until {
        assert_eq!(talker.call(&["PING"]), Resp::status("PONG"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(talker.call(&["RPUSH", "idle:list", "v"]), Resp::Int(1));
    assert_eq!(
        blocked.read_reply(),
        Resp::bulks(&["idle:list", "v"]),
        "the blocked client was released by the push, not closed"
    );
    assert_eq!(talker.call(&["PUBLISH", "idle:channel", "m"]), Resp::Int(1));
    assert_eq!(
        subscribed.read_reply(),
        Resp::bulks(&["message", "idle:channel", "m"])
    );
    assert_eq!(
        info_field(&mut talker, "strata_idle_timeout_disconnections"),
        2,
        "the idle client and the one inside MULTI"
    );
    // Out of BLPOP, the formerly blocked client is an ordinary idle client again.
    let blocked_stream = blocked.try_clone_stream();
    poll_until(DEADLINE, "the released client to be closed", || {
        assert_eq!(talker.call(&["PING"]), Resp::status("PONG"));
        std::thread::sleep(Duration::from_millis(100));
        is_closed(&blocked_stream).then_some(())
    });
}

#[test]
fn a_reload_turns_the_timeout_on_for_open_connections() {
    let nodes = RedisNode::start_many(1);
    let builder = || Strata::builder(&nodes);
    let strata = builder().start_with_file();
    let mut c = RawClient::connect(&strata.addr().to_string());
    let mut idle = RawClient::connect(&strata.addr().to_string());
    assert_eq!(idle.call(&["PING"]), Resp::status("PONG"));
    let stream = idle.try_clone_stream();
    std::thread::sleep(Duration::from_millis(600));
    assert!(!is_closed(&stream), "closed with idle_timeout 0");

    let yaml = builder()
        .section("limits: {idle_timeout: 300ms}")
        .yaml()
        .replace("listen: 127.0.0.1:0", &format!("listen: {}", strata.addr()));
    std::fs::write(strata.config_path(), yaml).unwrap();
    let reply = c.call(&["STRATA", "RELOAD"]);
    assert!(!reply.is_error(), "{reply:?}");
    poll_until(
        DEADLINE,
        "the idle client to be closed after the reload",
        || {
            assert_eq!(c.call(&["PING"]), Resp::status("PONG"));
            std::thread::sleep(Duration::from_millis(50));
            is_closed(&stream).then_some(())
        },
    );
    assert_eq!(info_field(&mut c, "strata_idle_timeout_disconnections"), 1);
}
