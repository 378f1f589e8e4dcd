//! RESP3 through the proxy, checked with an independent client (the `redis` crate in RESP3
//! mode, which sends `HELLO 3`): maps, sets, doubles and nulls as Redis gives them, while a
//! RESP2 client on the same nodes keeps getting RESP2; HELLO's reply fields; push frames for
//! pub/sub.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{RedisNode, Resp, Strata};
use redis::Value;

fn resp3(strata: &Strata) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", strata.addr())).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con
}

fn query(con: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap()
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn maps_sets_doubles_and_nulls_as_redis_gives_them() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut con = resp3(&strata);
    query(&mut con, &["HSET", "h", "a", "1", "b", "2"]);
    match query(&mut con, &["HGETALL", "h"]) {
        Value::Map(mut pairs) => {
            pairs.sort_by_key(|(k, _)| format!("{k:?}"));
            assert_eq!(pairs, vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]);
        }
        other => panic!("HGETALL: {other:?}"),
    }
    query(&mut con, &["SADD", "s", "x", "y"]);
    match query(&mut con, &["SMEMBERS", "s"]) {
        Value::Set(mut items) => {
            items.sort_by_key(|v| format!("{v:?}"));
            assert_eq!(items, vec![bulk("x"), bulk("y")]);
        }
        other => panic!("SMEMBERS: {other:?}"),
    }
    query(&mut con, &["ZADD", "z", "1.5", "m", "2", "n"]);
    assert_eq!(query(&mut con, &["ZSCORE", "z", "m"]), Value::Double(1.5));
    assert_eq!(
        query(&mut con, &["ZMSCORE", "z", "m", "nope"]),
        Value::Array(vec![Value::Double(1.5), Value::Nil])
    );
    assert_eq!(
        query(&mut con, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        Value::Array(vec![
            Value::Array(vec![bulk("m"), Value::Double(1.5)]),
            Value::Array(vec![bulk("n"), Value::Double(2.0)]),
        ])
    );
    assert_eq!(query(&mut con, &["GET", "missing"]), Value::Nil);
    assert_eq!(
        query(&mut con, &["MGET", "missing", "h2"]),
        Value::Array(vec![Value::Nil, Value::Nil])
    );
    match query(&mut con, &["CONFIG", "GET", "maxclients"]) {
        Value::Map(pairs) => assert_eq!(pairs[0].0, bulk("maxclients")),
        other => panic!("CONFIG GET: {other:?}"),
    }
    // Parameters from a node merged with strata's own: still one map, each name once.
    match query(&mut con, &["CONFIG", "GET", "maxmemory*", "save", "max*"]) {
        Value::Map(pairs) => {
            let mut names: Vec<Value> = pairs.iter().map(|(k, _)| k.clone()).collect();
            assert!(names.contains(&bulk("maxmemory")) && names.contains(&bulk("save")));
            assert!(names.contains(&bulk("maxclients")), "{names:?}");
            let all = names.len();
            names.sort_by_key(|n| format!("{n:?}"));
            names.dedup();
            assert_eq!(names.len(), all, "a name twice in {pairs:?}");
        }
        other => panic!("CONFIG GET: {other:?}"),
    }
    // A RESP2 client of the same strata (and nodes) still gets RESP2.
    let mut c = strata.raw();
    assert_eq!(c.call(&["GET", "missing"]), Resp::Nil);
    assert_eq!(
        c.call(&["HGETALL", "h"]).array().len(),
        4,
        "RESP2 HGETALL is a flat array"
    );
}

#[test]
fn hello_switches_protocols_with_redis_fields() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    c.send(b"HELLO 3 SETNAME app\r\n");
    let mut head = [0u8; 3];
    let raw = c.read_exact_bytes(3);
    head.copy_from_slice(&raw);
    assert_eq!(&head, b"%7\r", "HELLO 3 answers with a map of 7 fields");
    // Back to RESP2: a flat array with proto 2.
    let mut c = strata.raw();
    let hello = c.call(&["HELLO", "2"]);
    let items = hello.array();
    assert_eq!(items.len(), 14);
    assert_eq!(items[4], Resp::bulk("proto"));
    assert_eq!(items[5], Resp::Int(2));
    assert_eq!(
        c.call(&["HELLO", "4"]).error_text(),
        "NOPROTO unsupported protocol version"
    );
    let mut con = resp3(&strata);
    let list: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    assert!(list.contains("resp=3"), "{list}");
}

#[test]
fn pubsub_messages_are_push_frames_under_resp3() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut sub = strata.raw();
    sub.send(b"HELLO 3\r\n");
    // The map reply ends with the empty modules array.
    let mut seen = Vec::new();
    while !seen.ends_with(b"modules\r\n*0\r\n") {
        seen.extend(sub.read_exact_bytes(1));
    }
    sub.send(b"SUBSCRIBE news\r\n");
    let confirm = sub.read_exact_bytes(3);
    assert_eq!(&confirm, b">3\r", "subscribe confirmations are pushes");
    let mut publisher = strata.raw();
    common::poll_until(common::DEADLINE, "the subscriber", || {
        (publisher.call(&["PUBLISH", "news", "hi"]) == Resp::Int(1)).then_some(())
    });
    // Skip the rest of the confirmation frame, then the message starts with a push header.
    let rest =
        String::from_utf8(sub.read_exact_bytes("\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n".len()))
            .unwrap();
    assert!(rest.ends_with(":1\r\n"), "{rest:?}");
    assert_eq!(&sub.read_exact_bytes(3), b">3\r");
    let _ = sub.read_exact_bytes("\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n".len());
    // Under RESP3 any command may run while subscribed.
    assert_eq!(sub.call(&["SET", "k", "v"]), Resp::ok());
    assert_eq!(sub.call(&["GET", "k"]), Resp::bulk("v"));
    // Unsubscribing from nothing: a push with a RESP3 null name.
    let mut other = strata.raw();
    other.send(b"HELLO 3\r\n");
    let mut seen = Vec::new();
    while !seen.ends_with(b"modules\r\n*0\r\n") {
        seen.extend(other.read_exact_bytes(1));
    }
    other.send(b"UNSUBSCRIBE\r\n");
    let want = b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n";
    assert_eq!(other.read_exact_bytes(want.len()), want.to_vec());
}

#[test]
fn exec_elements_take_their_commands_resp3_types() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut con = resp3(&strata);
    query(&mut con, &["HSET", "{t}h", "a", "1"]);
    query(&mut con, &["ZADD", "{t}z", "2.5", "m"]);
    let (map, score, missing): (Value, Value, Value) = redis::pipe()
        .atomic()
        .cmd("HGETALL")
        .arg("{t}h")
        .cmd("ZSCORE")
        .arg("{t}z")
        .arg("m")
        .cmd("GET")
        .arg("{t}nothing")
        .query(&mut con)
        .unwrap();
    assert_eq!(map, Value::Map(vec![(bulk("a"), bulk("1"))]));
    assert_eq!(score, Value::Double(2.5));
    assert_eq!(missing, Value::Nil);
}
