//! More of the command surface over real Redis nodes: RESET, CLIENT KILL (old and new
//! forms) on strata's own clients, CLIENT PAUSE refused with the reason, NO-EVICT
//! accepted, OBJECT / MEMORY USAGE / DUMP / RESTORE on the key's node, and SORT with BY / GET
//! patterns allowed only when their keys are on the sorted key's node.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{poll_until, RedisNode, Resp, Strata, DEADLINE};

#[test]
fn reset_leaves_multi_watch_pubsub_and_resp3() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    assert_eq!(c.call(&["MULTI"]), Resp::ok());
    assert_eq!(c.call(&["SET", "r", "1"]), Resp::Status("QUEUED".into()));
    assert_eq!(c.call(&["RESET"]), Resp::Status("RESET".into()));
    assert_eq!(c.call(&["EXEC"]).error_text(), "ERR EXEC without MULTI");
    assert!(!nodes.iter().any(|n| n.exists("r")));
    c.call(&["SUBSCRIBE", "ch"]);
    assert_eq!(c.call(&["RESET"]), Resp::Status("RESET".into()));
    assert_eq!(c.call(&["SET", "r", "2"]), Resp::ok());
    let list = c.call(&["CLIENT", "INFO"]).text();
    assert!(list.contains("resp=2"), "{list}");
}

#[test]
fn client_kill_closes_strata_clients() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut admin = strata.raw();
    let mut victim = strata.raw();
    let id = victim.call(&["CLIENT", "ID"]).int();
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &id.to_string()]),
        Resp::Int(1)
    );
    victim.expect_closed();
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", "999999"]),
        Resp::Int(0)
    );
    // Old form: by address.
    let mut other = strata.raw();
    let info = other.call(&["CLIENT", "INFO"]).text();
    let addr = info
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap()
        .to_string();
    assert_eq!(admin.call(&["CLIENT", "KILL", &addr]), Resp::ok());
    other.expect_closed();
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "127.0.0.1:1"]).error_text(),
        "ERR No such client"
    );
    // SKIPME yes (the default) spares the caller.
    let admin_id = admin.call(&["CLIENT", "ID"]).int();
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &admin_id.to_string()]),
        Resp::Int(0)
    );
    assert!(admin
        .call(&["CLIENT", "PAUSE", "100"])
        .error_text()
        .starts_with("ERR strata: CLIENT PAUSE is not supported through the proxy"));
    assert_eq!(admin.call(&["CLIENT", "NO-EVICT", "on"]), Resp::ok());
    // Redis 7.0 has no CLIENT NO-TOUCH / SETINFO (they came in 7.2); strata answers as 7.0.
    assert_eq!(
        admin.call(&["CLIENT", "NO-TOUCH", "on"]).error_text(),
        "ERR unknown subcommand 'NO-TOUCH'. Try CLIENT HELP."
    );
    assert_eq!(
        admin
            .call(&["CLIENT", "SETINFO", "lib-name", "x"])
            .error_text(),
        "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."
    );
    poll_until(DEADLINE, "killed clients gone from CLIENT LIST", || {
        (admin.call(&["CLIENT", "LIST"]).text().lines().count() == 1).then_some(())
    });
}

#[test]
fn key_introspection_and_dump_restore_run_on_the_keys_node() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    c.call(&["HSET", "obj", "f", "v"]);
    assert_eq!(
        c.call(&["OBJECT", "ENCODING", "obj"]),
        Resp::bulk("listpack")
    );
    assert!(c.call(&["MEMORY", "USAGE", "obj"]).int() > 0);
    let dump = match c.call(&["DUMP", "obj"]) {
        Resp::Bulk(b) => b,
        other => panic!("{other:?}"),
    };
    let copy = strata.key_on((strata.owner("obj") + 1) % 3, "copy:", &[]);
    let mut args: Vec<Vec<u8>> = vec![b"RESTORE".to_vec(), copy.clone().into(), b"0".to_vec()];
    args.push(dump);
    assert_eq!(c.call(&args), Resp::ok());
    assert_eq!(c.call(&["HGET", &copy, "f"]), Resp::bulk("v"));
    assert!(nodes[strata.owner(&copy)].exists(&copy));
}

#[test]
fn sort_patterns_must_stay_on_the_sorted_keys_node() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    c.call(&["RPUSH", "{s}list", "2", "1"]);
    assert_eq!(
        c.call(&["SORT", "{s}list"]),
        Resp::Array(vec![Resp::bulk("1"), Resp::bulk("2")])
    );
    // Patterns with the list's hash tag are on its node: allowed.
    c.call(&["SET", "{s}w_1", "9"]);
    c.call(&["SET", "{s}w_2", "1"]);
    assert_eq!(
        c.call(&["SORT", "{s}list", "BY", "{s}w_*"]),
        Resp::Array(vec![Resp::bulk("2"), Resp::bulk("1")])
    );
    assert_eq!(
        c.call(&["SORT", "{s}list", "BY", "nosort", "GET", "#"]),
        Resp::Array(vec![Resp::bulk("2"), Resp::bulk("1")])
    );
    // Without a tag the pattern's keys could be anywhere.
    assert_eq!(
        c.call(&["SORT", "{s}list", "BY", "w_*"]).error_text(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    assert_eq!(
        c.call(&["SORT", "{s}list", "GET", "o_*->f"]).error_text(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
}

/// CLIENT LIST / CLIENT INFO fields are the session's real state: subscriptions, MULTI,
/// the last command with its subcommand, buffers, the file descriptor.
#[test]
fn client_list_shows_each_sessions_state() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut admin = strata.raw();
    let mut sub = strata.raw();
    sub.call(&["SUBSCRIBE", "a", "b"]);
    sub.read_reply(); // the second channel's confirmation
    sub.call(&["PSUBSCRIBE", "p*"]);
    let mut tx = strata.raw();
    tx.call(&["MULTI"]);
    tx.call(&["SET", "k", "12345"]);
    tx.call(&["GET", "k"]);
    let field = |line: &str, name: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_string()
    };
    let list = admin.call(&["CLIENT", "LIST"]).text();
    let sub_line = list.lines().find(|l| field(l, "sub") == "2").expect(&list);
    assert_eq!(field(sub_line, "psub"), "1");
    assert_eq!(field(sub_line, "flags"), "P");
    assert_eq!(field(sub_line, "cmd"), "psubscribe");
    let tx_line = list
        .lines()
        .find(|l| field(l, "multi") == "2")
        .expect(&list);
    assert_eq!(field(tx_line, "flags"), "x");
    assert_eq!(
        field(tx_line, "multi-mem"),
        "13",
        "the bytes of SET k 12345 and GET k"
    );
    assert!(field(tx_line, "fd").parse::<i64>().unwrap() > 2);
    let me = admin.call(&["CLIENT", "INFO"]).text();
    assert_eq!(field(me.trim_end(), "cmd"), "client|info");
    assert!(!me.contains("lib-name"), "{me}");
    let pubsub = admin.call(&["CLIENT", "LIST", "TYPE", "pubsub"]).text();
    assert_eq!(pubsub.lines().count(), 1, "{pubsub}");
    let normal = admin.call(&["CLIENT", "LIST", "TYPE", "normal"]).text();
    assert_eq!(normal.lines().count(), 2, "{normal}");
    // A client blocked in BLPOP is flagged `b` until its command returns.
    let mut blocked = strata.raw();
    blocked.send_cmd(&["BLPOP", "empty-list", "0"]);
    poll_until(DEADLINE, "the BLPOP client flagged blocked", || {
        let list = admin.call(&["CLIENT", "LIST"]).text();
        list.lines()
            .any(|l| field(l, "flags") == "b" && field(l, "cmd") == "blpop")
            .then_some(())
    });
    admin.call(&["RPUSH", "empty-list", "x"]);
    assert_eq!(blocked.read_reply(), Resp::bulks(&["empty-list", "x"]));
    poll_until(DEADLINE, "no client flagged blocked", || {
        let list = admin.call(&["CLIENT", "LIST"]).text();
        (!list.lines().any(|l| field(l, "flags").contains('b'))).then_some(())
    });
}
