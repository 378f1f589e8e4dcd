//! The client side of the wire: pipelining (replies exact and in order), inline commands,
//! requests arriving in pieces, big values, and protocol errors answered with Redis's texts
//! before the connection closes (with default and configured limits).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::io::Write;

use common::{encode_cmd, RawClient, RedisNode, Resp, Strata};

/// Builds `count` mixed commands and the exact reply each must get, in order.
fn mixed_pipeline(count: usize) -> (Vec<u8>, Vec<Resp>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    let mut counters: HashMap<String, i64> = HashMap::new();
    let value = |i: usize| format!("v{i}");
    for i in 0..count {
        match i % 7 {
            0 => {
                bytes.extend(encode_cmd(&["SET", &format!("p:k{i}"), &value(i)]));
                expected.push(Resp::ok());
            }
            1 => {
                bytes.extend(encode_cmd(&["GET", &format!("p:k{}", i - 1)]));
                expected.push(Resp::bulk(value(i - 1)));
            }
            2 => {
                let c = format!("p:c{}", i % 11);
                bytes.extend(encode_cmd(&["INCR", &c]));
                let n = counters.entry(c).or_insert(0);
                *n += 1;
                expected.push(Resp::Int(*n));
            }
            3 => {
                bytes.extend(encode_cmd(&["PING"]));
                expected.push(Resp::status("PONG"));
            }
            4 => {
                // Keys on several nodes: the split/merge path inside the pipeline.
                let older = i.saturating_sub(11) / 7 * 7;
                let args = [
                    "MGET".to_string(),
                    format!("p:k{}", i - 4),
                    format!("p:missing{i}"),
                    format!("p:k{older}"),
                ];
                bytes.extend(encode_cmd(&args));
                expected.push(Resp::Array(vec![
                    Resp::bulk(value(i - 4)),
                    Resp::Nil,
                    Resp::bulk(value(older)),
                ]));
            }
            5 => {
                bytes.extend(encode_cmd(&["NOPE", &format!("a{i}")]));
                expected.push(Resp::Error(format!(
                    "ERR unknown command 'NOPE', with args beginning with: 'a{i}' "
                )));
            }
            _ => {
                bytes.extend(encode_cmd(&["ECHO", &format!("e{i}")]));
                expected.push(Resp::bulk(format!("e{i}")));
            }
        }
    }
    (bytes, expected)
}

#[test]
fn thousand_mixed_commands_in_one_write() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let (bytes, expected) = mixed_pipeline(1000);
    client.send(&bytes);
    for (i, want) in expected.iter().enumerate() {
        let got = client.read_reply();
        assert_eq!(&got, want, "reply #{i}");
    }
    // Nothing more than the 1000 replies, and the connection is still good.
    assert_eq!(client.call(&["PING"]), Resp::status("PONG"));
    // The counters are on their nodes.
    let c = "p:c2";
    let n: i64 = redis::cmd("GET")
        .arg(c)
        .query(&mut nodes[strata.owner(c)].conn())
        .unwrap();
    assert!(n > 0);
}

#[test]
fn long_pipeline_beyond_max_pipeline_stays_in_order() {
    let nodes = RedisNode::start_many(3);
    // A small in-flight limit: strata has to stop reading and resume many times.
    let strata = Strata::builder(&nodes)
        .section("limits: {max_pipeline: 64}")
        .start();
    let mut client = strata.raw();

    let (bytes, expected) = mixed_pipeline(20_000);
    // Write from another thread: neither side may wait for the other's buffers to drain.
    let mut writer = client.try_clone_stream();
    let sender = std::thread::spawn(move || writer.write_all(&bytes));
    for (i, want) in expected.iter().enumerate() {
        let got = client.read_reply();
        assert_eq!(&got, want, "reply #{i}");
    }
    sender.join().unwrap().unwrap();
    assert_eq!(client.call(&["PING"]), Resp::status("PONG"));
}

#[test]
fn inline_commands() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    client.send(b"PING\r\n");
    assert_eq!(client.read_reply(), Resp::status("PONG"));
    client.send(b"SET foo \"bar baz\"\r\n");
    assert_eq!(client.read_reply(), Resp::ok());
    client.send(b"GET foo\r\n");
    assert_eq!(client.read_reply(), Resp::bulk("bar baz"));
    assert_eq!(
        nodes[strata.owner("foo")].get("foo").as_deref(),
        Some("bar baz")
    );

    // Blank lines and empty multibulks are skipped; the next command is still answered.
    client.send(b"\r\n\r\nPING\r\n");
    assert_eq!(client.read_reply(), Resp::status("PONG"));
    client.send(b"\n\n*0\r\nECHO hi\n");
    assert_eq!(client.read_reply(), Resp::bulk("hi"));

    // Quoting: escapes in double quotes, single quotes kept literally.
    client.send(b"SET q \"a\\tb\\x41\" \r\nGET q\r\nSET s 'x\"y'\r\nGET s\r\n");
    assert_eq!(client.read_reply(), Resp::ok());
    assert_eq!(client.read_reply(), Resp::bulk("a\tbA"));
    assert_eq!(client.read_reply(), Resp::ok());
    assert_eq!(client.read_reply(), Resp::bulk("x\"y"));

    // Inline and multibulk mixed in one write, keys across nodes.
    let mut mixed = b"MSET i1 1 i2 2 i3 3 i4 4\r\n".to_vec();
    mixed.extend(encode_cmd(&["MGET", "i1", "i2", "i3", "i4"]));
    mixed.extend(b"DEL i1 i2 i3 i4 i5\r\n");
    client.send(&mixed);
    assert_eq!(client.read_reply(), Resp::ok());
    assert_eq!(client.read_reply(), Resp::bulks(&["1", "2", "3", "4"]));
    assert_eq!(client.read_reply(), Resp::Int(4));
}

#[test]
fn requests_arriving_byte_by_byte() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let mut bytes = encode_cmd(&["MSET", "bb:1", "one", "bb:2", "two", "bb:3", "three"]);
    bytes.extend(encode_cmd(&["MGET", "bb:3", "bb:2", "bb:1"]));
    bytes.extend(b"GET bb:2\r\n");
    for b in &bytes {
        client.send(std::slice::from_ref(b));
    }
    assert_eq!(client.read_reply(), Resp::ok());
    assert_eq!(client.read_reply(), Resp::bulks(&["three", "two", "one"]));
    assert_eq!(client.read_reply(), Resp::bulk("two"));
}

#[test]
fn big_values_round_trip() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let value: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(client.call(&[&b"SET"[..], b"big", &value]), Resp::ok());
    assert_eq!(
        client.call(&["STRLEN", "big"]),
        Resp::Int(value.len() as i64)
    );
    client.send_cmd(&["GET", "big"]);
    let header = format!("${}\r\n", value.len());
    assert_eq!(client.read_exact_bytes(header.len()), header.as_bytes());
    assert!(
        client.read_exact_bytes(value.len()) == value,
        "value differs"
    );
    assert_eq!(client.read_exact_bytes(2), b"\r\n");
    let mut direct = nodes[strata.owner("big")].conn();
    let stored: Vec<u8> = redis::cmd("GET").arg("big").query(&mut direct).unwrap();
    assert!(stored == value);
}

/// Sends `bytes` on a fresh connection and expects exactly `replies`, then the close.
fn expect_replies_then_close(strata: &Strata, bytes: &[u8], replies: &[Resp]) {
    let mut client = strata.raw();
    client.send(bytes);
    for want in replies {
        assert_eq!(&client.read_reply(), want);
    }
    client.expect_closed();
}

#[test]
fn protocol_errors_answer_then_close() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let err = |s: &str| Resp::Error(format!("ERR Protocol error: {s}"));

    expect_replies_then_close(&strata, b"*1048577\r\n", &[err("invalid multibulk length")]);
    expect_replies_then_close(&strata, b"*abc\r\n", &[err("invalid multibulk length")]);
    expect_replies_then_close(
        &strata,
        b"*1\r\n$536870913\r\n",
        &[err("invalid bulk length")],
    );
    expect_replies_then_close(&strata, b"*1\r\n$-5\r\n", &[err("invalid bulk length")]);
    expect_replies_then_close(&strata, &[b'a'; 70_000], &[err("too big inline request")]);
    expect_replies_then_close(&strata, b"*1\r\n:x\r\n", &[err("expected '$', got ':'")]);
    expect_replies_then_close(
        &strata,
        b"SET k \"unbalanced\r\n",
        &[err("unbalanced quotes in request")],
    );

    // A request before the bad one, in the same write, is answered first.
    expect_replies_then_close(
        &strata,
        b"PING\r\n*1\r\n:x\r\n",
        &[Resp::status("PONG"), err("expected '$', got ':'")],
    );
    let mut bytes = encode_cmd(&["SET", "before", "1"]);
    bytes.extend(encode_cmd(&["GET", "before"]));
    bytes.extend(b"*2\r\n$3\r\nGET\r\n+x\r\n");
    expect_replies_then_close(
        &strata,
        &bytes,
        &[Resp::ok(), Resp::bulk("1"), err("expected '$', got '+'")],
    );
    // Nothing after the bad request runs.
    let mut bytes = b"*1\r\n:x\r\n".to_vec();
    bytes.extend(encode_cmd(&["SET", "after", "1"]));
    expect_replies_then_close(&strata, &bytes, &[err("expected '$', got ':'")]);
    assert!(!nodes.iter().any(|n| n.exists("after")));

    // strata itself is unharmed.
    assert_eq!(strata.raw().call(&["GET", "before"]), Resp::bulk("1"));
}

#[test]
fn configured_limits() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::builder(&nodes)
        .section("limits: {max_multibulk_len: 4, max_bulk_len: 10, max_inline_len: 32}")
        .start();
    let err = |s: &str| Resp::Error(format!("ERR Protocol error: {s}"));

    // At the limits: fine.
    let mut client = strata.raw();
    assert_eq!(
        client.call(&["MGET", "a", "b", "c"]),
        Resp::Array(vec![Resp::Nil, Resp::Nil, Resp::Nil])
    );
    assert_eq!(client.call(&["SET", "k", "0123456789"]), Resp::ok());
    client.send(b"ECHO 0123456789012345678901234\r\n");
    assert_eq!(client.read_reply(), Resp::bulk("0123456789012345678901234"));

    expect_replies_then_close(&strata, b"*5\r\n", &[err("invalid multibulk length")]);
    expect_replies_then_close(
        &strata,
        &encode_cmd(&["SET", "k", "01234567890"]),
        &[err("invalid bulk length")],
    );
    expect_replies_then_close(&strata, &[b'x'; 40], &[err("too big inline request")]);
    expect_replies_then_close(
        &strata,
        b"ECHO 012345678901234567890123456789012\r\n",
        &[err("too big inline request")],
    );
    assert_eq!(strata.raw().call(&["GET", "k"]), Resp::bulk("0123456789"));
}

#[test]
fn quit_answers_then_closes() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    // Requests after QUIT in the same write are not run.
    let mut bytes = encode_cmd(&["SET", "q1", "1"]);
    bytes.extend(encode_cmd(&["QUIT"]));
    bytes.extend(encode_cmd(&["SET", "q2", "2"]));
    expect_replies_then_close(&strata, &bytes, &[Resp::ok(), Resp::ok()]);
    assert!(nodes[0].exists("q1"));
    assert!(!nodes[0].exists("q2"));

    let mut client: RawClient = strata.raw();
    client.send(b"QUIT\r\n");
    assert_eq!(client.read_reply(), Resp::ok());
    client.expect_closed();
}

#[test]
fn half_closed_client_still_gets_its_replies() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let mut bytes = Vec::new();
    for i in 0..50 {
        bytes.extend(encode_cmd(&["SET", &format!("hc:{i}"), &i.to_string()]));
    }
    bytes.extend(encode_cmd(&["MGET", "hc:0", "hc:49", "hc:none"]));
    client.send(&bytes);
    // The way `nc` or `redis-cli --pipe` end their input.
    client
        .try_clone_stream()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    for i in 0..50 {
        assert_eq!(client.read_reply(), Resp::ok(), "SET #{i}");
    }
    assert_eq!(
        client.read_reply(),
        Resp::Array(vec![Resp::bulk("0"), Resp::bulk("49"), Resp::Nil])
    );
    client.expect_closed();
    assert_eq!(
        nodes[strata.owner("hc:7")].get("hc:7").as_deref(),
        Some("7")
    );
}

#[test]
fn max_clients_refuses_extra_connections() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section("limits: {max_clients: 2}")
        .start();
    let mut first = strata.raw();
    let mut second = strata.raw();
    assert_eq!(first.call(&["PING"]), Resp::status("PONG"));
    assert_eq!(second.call(&["PING"]), Resp::status("PONG"));

    let mut third = strata.raw();
    assert_eq!(
        third.read_reply(),
        Resp::err("ERR max number of clients reached")
    );
    third.expect_closed();

    // A freed slot is usable again (the session ends asynchronously: poll).
    drop(first);
    common::poll_until(common::DEADLINE, "a slot to free up", || {
        let mut c = strata.raw();
        c.send_cmd(&["PING"]);
        match c.read_reply() {
            Resp::Status(s) if s == "PONG" => Some(()),
            Resp::Error(e) if e == "ERR max number of clients reached" => None,
            other => panic!("unexpected {other:?}"),
        }
    });
    assert_eq!(second.call(&["PING"]), Resp::status("PONG"));
}

#[test]
fn order_holds_with_several_connections_per_node() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .workers(3)
        .section("backend: {connections_per_node: 4, reconnect_backoff_min: 20ms, reconnect_backoff_max: 200ms}")
        .start();
    // Several clients at once, each with its own pipeline.
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let mut client = strata.raw();
            std::thread::spawn(move || {
                let id = client.call(&["CLIENT", "ID"]).int();
                let (bytes, expected) = mixed_pipeline_for(&format!("c{id}:"), 700);
                client.send(&bytes);
                for (i, want) in expected.iter().enumerate() {
                    assert_eq!(&client.read_reply(), want, "client {id} reply #{i}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Like [`mixed_pipeline`] with every key under `prefix`.
fn mixed_pipeline_for(prefix: &str, count: usize) -> (Vec<u8>, Vec<Resp>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let k = format!("{prefix}k{}", i / 3);
        match i % 3 {
            0 => {
                bytes.extend(encode_cmd(&["INCR", &format!("{prefix}n")]));
                expected.push(Resp::Int(i as i64 / 3 + 1));
            }
            1 => {
                bytes.extend(encode_cmd(&["SET", &k, &i.to_string()]));
                expected.push(Resp::ok());
            }
            _ => {
                bytes.extend(encode_cmd(&["MGET", &k, &format!("{prefix}n")]));
                expected.push(Resp::bulks(&[(i - 1).to_string(), (i / 3 + 1).to_string()]));
            }
        }
    }
    (bytes, expected)
}
