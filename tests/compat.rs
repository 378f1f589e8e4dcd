//! Replies strata builds itself (argument checks, key-count errors, local commands) compared byte
//! for byte with what a real redis-server answers to the same request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{RawClient, RedisNode, Strata};

/// Sends every request to strata and to a plain redis-server; returns the ones that differ.
fn differences(cases: &[Vec<String>]) -> Vec<String> {
    let reference = RedisNode::start();
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut proxy = strata.raw();
    let mut direct = RawClient::connect(&reference.addr());
    let mut out = Vec::new();
    for args in cases {
        let want = direct.call(args);
        let got = proxy.call(args);
        if got != want {
            out.push(format!(
                "{args:?}\n    redis:  {want:?}\n    strata: {got:?}"
            ));
        }
    }
    out
}

fn case(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn argument_errors_match_redis() {
    let long_a = "a".repeat(100);
    let long_b = "b".repeat(100);
    let long_name = "n".repeat(200);
    let cases = vec![
        case(&["foo", "a", "b"]),
        case(&["foo"]),
        case(&["FooBar", &long_a, &long_b, "c"]),
        case(&[&long_name, "x"]),
        case(&["GET"]),
        case(&["get", "a", "b"]),
        case(&["SET", "k"]),
        case(&["HSET", "k", "f"]),
        case(&["ZADD", "k"]),
        case(&["EXPIRE", "k"]),
        case(&["MGET"]),
        case(&["DEL"]),
        case(&["EXISTS"]),
        case(&["MSET", "a"]),
        case(&["MSET", "a", "1", "b"]),
        case(&["MSETNX", "a", "1", "b"]),
        case(&["DBSIZE", "x"]),
        case(&["KEYS"]),
        case(&["TIME", "x"]),
        case(&["RENAME", "a"]),
        case(&["OBJECT"]),
    ];
    let diffs = differences(&cases);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn local_commands_match_redis() {
    let cases = vec![
        case(&["PING"]),
        case(&["PING", "hi"]),
        case(&["PING", "a", "b"]),
        case(&["ECHO", "x y"]),
        case(&["ECHO"]),
        case(&["ECHO", "a", "b"]),
        case(&["SELECT", "0"]),
        case(&["SELECT", "x"]),
        case(&["AUTH", "pw"]),
        case(&["AUTH", "default", "pw"]),
        case(&["AUTH", "bob", "pw"]),
        case(&["HELLO", "x"]),
        case(&["HELLO", "2", "FOO"]),
        case(&["HELLO", "2", "SETNAME", "a b"]),
        case(&["CLIENT", "SETNAME", "a b"]),
        case(&["CLIENT", "SETNAME", "ok-name"]),
        case(&["CLIENT", "GETNAME"]),
        case(&["CLIENT", "NOSUCH"]),
        case(&["CLIENT"]),
        case(&["CLIENT", "ID", "x"]),
        case(&["CONFIG", "NOSUCH"]),
        case(&["CONFIG", "GET"]),
        case(&["CONFIG", "SET", "a"]),
        case(&["CONFIG", "GET", "save"]),
        case(&["CONFIG", "GET", "appendonly"]),
        case(&["CONFIG", "GET", "SAVE", "save"]),
        case(&["CONFIG", "GET", "maxmemory"]),
        case(&["CONFIG", "GET", "MAXMEMORY-policy"]),
        case(&["CONFIG", "GET", "nosuch*"]),
        case(&["SCRIPT", "NOSUCH"]),
        case(&["SCRIPT", "LOAD"]),
        case(&["FUNCTION", "NOSUCH"]),
        case(&["COMMAND", "NOSUCH"]),
        case(&["COMMAND", "COUNT", "x"]),
        case(&["COMMAND", "GETKEYS"]),
        case(&["COMMAND", "GETKEYS", "nosuch", "x"]),
        case(&["COMMAND", "GETKEYS", "get", "a", "b"]),
        case(&["COMMAND", "GETKEYS", "PING", "x"]),
        case(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]),
        case(&["COMMAND", "GETKEYS", "EVAL", "return 1", "2", "x", "y", "z"]),
        case(&["COMMAND", "GETKEYS", "ZUNIONSTORE", "d", "2", "a", "b"]),
        case(&[
            "COMMAND", "GETKEYS", "XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0",
        ]),
        case(&[
            "COMMAND", "GETKEYS", "SORT", "k", "LIMIT", "0", "1", "STORE", "d",
        ]),
        case(&["SCAN", "abc"]),
    ];
    let diffs = differences(&cases);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn key_count_errors_match_redis() {
    let cases = vec![
        case(&["EVAL", "return 1", "-1"]),
        case(&["EVAL", "return 1", "abc"]),
        case(&["EVAL", "return 1", "2", "k"]),
        case(&["EVAL", "return 1", "99999999999999999999", "k"]),
        case(&["EVALSHA", "0000000000000000000000000000000000000000", "1"]),
        case(&["ZUNIONSTORE", "d", "0", "a"]),
        case(&["ZUNIONSTORE", "d", "-1", "a"]),
        case(&["ZUNIONSTORE", "d", "5", "a"]),
        case(&["ZUNIONSTORE", "d", "x", "a"]),
        case(&["ZINTER", "0", "a"]),
        case(&["ZDIFF", "2", "a"]),
        case(&["SINTERCARD", "0", "a"]),
        case(&["SINTERCARD", "3", "a"]),
        case(&["LMPOP", "0", "a", "LEFT"]),
        case(&["LMPOP", "5", "a", "LEFT"]),
        case(&["ZMPOP", "2", "{z}a", "{z}b"]),
        case(&["XREAD", "STREAMS", "a"]),
        case(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "a"]),
    ];
    let diffs = differences(&cases);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

// Redis 7.0 answers `SELECT 99999999999` with "ERR value is out of range, value must between
// -2147483648 and 2147483647"; strata stops after "out of range".
#[test]
fn select_out_of_range_text_matches_redis() {
    let diffs = differences(&[
        case(&["SELECT", "99999999999"]),
        case(&["SELECT", "-99999999999"]),
    ]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

// In Redis 7.0 `COMMAND GETKEYS` has arity -4 (`COMMAND GETKEYS <cmd> <arg>...`): with only a
// command name it is an arity error. strata accepts 3 arguments and answers about the command.
#[test]
fn command_getkeys_arity_matches_redis() {
    let diffs = differences(&[
        case(&["COMMAND", "GETKEYS", "nosuch"]),
        case(&["COMMAND", "GETKEYS", "get"]),
        case(&["COMMAND", "GETKEYS", "PING"]),
    ]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn client_tracking_replies_match_redis() {
    let t = |rest: &[&str]| {
        let mut words = vec!["CLIENT"];
        words.extend_from_slice(rest);
        case(&words)
    };
    let cases = vec![
        t(&["TRACKINGINFO"]),
        t(&["GETREDIR"]),
        t(&["CACHING", "yes"]),
        t(&["TRACKING"]),
        t(&["TRACKING", "maybe"]),
        t(&["TRACKING", "on", "bogus"]),
        t(&["TRACKING", "on", "REDIRECT", "x"]),
        t(&["TRACKING", "on", "REDIRECT", "999999"]),
        t(&["TRACKING", "maybe", "REDIRECT", "999999"]),
        t(&["TRACKING", "on", "PREFIX", "a"]),
        t(&["TRACKING", "on", "BCAST", "OPTIN"]),
        t(&["TRACKING", "on", "OPTIN", "OPTOUT"]),
        t(&["TRACKING", "on", "BCAST", "PREFIX", "ab", "PREFIX", "a"]),
        t(&["TRACKING", "on", "OPTIN", "NOLOOP"]),
        t(&["TRACKINGINFO"]),
        t(&["CACHING", "no"]),
        t(&["CACHING", "maybe"]),
        t(&["CACHING", "yes"]),
        t(&["TRACKINGINFO"]),
        t(&["TRACKING", "on", "OPTOUT"]),
        t(&["TRACKING", "on", "BCAST"]),
        t(&["GETREDIR"]),
        t(&["TRACKING", "off", "BCAST", "OPTIN", "OPTOUT"]),
        t(&["TRACKING", "on", "BCAST", "PREFIX", "b", "PREFIX", "a"]),
        t(&["TRACKING", "on", "BCAST", "PREFIX", "ab"]),
        t(&["TRACKING", "on", "BCAST", "PREFIX", "c"]),
        t(&["TRACKINGINFO"]),
        t(&["TRACKING", "off"]),
        t(&["GETREDIR"]),
        t(&["TRACKINGINFO"]),
    ];
    let diffs = differences(&cases);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
