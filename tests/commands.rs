//! Commands strata answers itself (PING, ECHO, SELECT, HELLO, CLIENT, COMMAND, TIME, INFO,
//! CONFIG GET, AUTH), its error texts (unknown, arity, unsupported), and the guard on dangerous
//! commands (`security.allow_dangerous_commands`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{RedisNode, Resp, Strata};

#[test]
fn ping_echo_select_auth() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();

    assert_eq!(c.call(&["PING"]), Resp::status("PONG"));
    assert_eq!(c.call(&["ping", "hello world"]), Resp::bulk("hello world"));
    assert_eq!(
        c.call(&["PING", "a", "b"]),
        Resp::err("ERR wrong number of arguments for 'ping' command")
    );
    assert_eq!(c.call(&["ECHO", "strata"]), Resp::bulk("strata"));
    assert_eq!(c.call(&["ECHO", ""]), Resp::bulk(""));
    assert_eq!(
        c.call(&["ECHO"]),
        Resp::err("ERR wrong number of arguments for 'echo' command")
    );
    assert_eq!(c.call(&["SELECT", "0"]), Resp::ok());
    assert_eq!(
        c.call(&["SELECT", "1"]),
        Resp::err("ERR DB index is out of range")
    );
    assert_eq!(
        c.call(&["SELECT", "x"]),
        Resp::err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.call(&["AUTH", "secret"]),
        Resp::err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
    );
    // Still db 0 and working.
    assert_eq!(c.call(&["SET", "sel", "1"]), Resp::ok());
    assert!(nodes[strata.owner("sel")].exists("sel"));
}

#[test]
fn hello_2_answers_in_resp2() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();

    let reply = c.call(&["HELLO", "2"]);
    let items = reply.array();
    assert_eq!(items.len() % 2, 0, "{reply:?}");
    let field = |name: &str| {
        items
            .chunks(2)
            .find(|kv| kv[0] == Resp::bulk(name))
            .map(|kv| kv[1].clone())
            .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
    };
    assert_eq!(field("proto"), Resp::Int(2));
    assert_eq!(field("server"), Resp::bulk("redis"));
    assert_eq!(field("mode"), Resp::bulk("standalone"));
    let id = c.call(&["CLIENT", "ID"]);
    assert_eq!(field("id"), id);

    assert_eq!(
        c.call(&["HELLO", "4"]),
        Resp::err("NOPROTO unsupported protocol version")
    );
    assert_eq!(
        c.call(&["HELLO", "2", "SETNAME", "via-hello"])
            .array()
            .len(),
        items.len()
    );
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), Resp::bulk("via-hello"));
    // The connection still speaks RESP2 after the refusal.
    assert_eq!(c.call(&["PING"]), Resp::status("PONG"));
}

#[test]
fn client_name_id_list() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    let mut other = strata.raw();

    assert_eq!(c.call(&["CLIENT", "GETNAME"]), Resp::Nil);
    assert_eq!(c.call(&["CLIENT", "SETNAME", "tester-1"]), Resp::ok());
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), Resp::bulk("tester-1"));
    assert_eq!(
        c.call(&["CLIENT", "SETNAME", "a b"]),
        Resp::err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(
        c.call(&["CLIENT", "SETNAME", "a\nb"]),
        Resp::err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), Resp::bulk("tester-1"));

    let id = c.call(&["CLIENT", "ID"]).int();
    let other_id = other.call(&["CLIENT", "ID"]).int();
    assert!(id > 0 && other_id > 0 && id != other_id);

    let list = c.call(&["CLIENT", "LIST"]).text();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines.len() >= 2, "{list}");
    let mine = lines
        .iter()
        .find(|l| l.split(' ').any(|f| f == "name=tester-1"))
        .unwrap_or_else(|| panic!("no name=tester-1 in CLIENT LIST:\n{list}"));
    assert!(mine.starts_with(&format!("id={id} ")), "{mine}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("id={other_id} "))),
        "{list}"
    );

    // CLIENT LIST ID filters.
    let only = c
        .call(&["CLIENT", "LIST", "ID", &other_id.to_string()])
        .text();
    assert_eq!(only.lines().count(), 1, "{only}");
    assert!(only.starts_with(&format!("id={other_id} ")));

    // A closed connection leaves the list (polled: the session ends asynchronously).
    drop(other);
    common::poll_until(
        common::DEADLINE,
        "closed client to leave CLIENT LIST",
        || {
            let list = c.call(&["CLIENT", "LIST"]).text();
            (!list.contains(&format!("id={other_id} "))).then_some(())
        },
    );
}

#[test]
fn command_introspection() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();

    let count = c.call(&["COMMAND", "COUNT"]).int();
    assert!(count > 200, "COMMAND COUNT = {count}");
    assert_eq!(c.call(&["COMMAND"]).array().len() as i64, count);
    // Redis 7.0's COMMAND LIST names subcommands too (config|get), so it is longer.
    let list = c.call(&["COMMAND", "LIST"]);
    assert!(list.array().contains(&Resp::bulk("strata")), "{list:?}");
    assert!(list.array().contains(&Resp::bulk("config|get")), "{list:?}");

    let info = c.call(&["COMMAND", "INFO", "get"]);
    let entry = info.array()[0].array();
    assert_eq!(entry[0], Resp::bulk("get"));
    assert_eq!(entry[1], Resp::Int(2));
    assert_eq!(
        entry[2],
        Resp::Array(vec![Resp::status("readonly"), Resp::status("fast")])
    );
    assert_eq!(&entry[3..6], &[Resp::Int(1), Resp::Int(1), Resp::Int(1)]);
    let info = c.call(&["COMMAND", "INFO", "mset", "nosuchcmd"]);
    assert_eq!(info.array()[0].array()[1], Resp::Int(-3));
    // Entries come from a node (Redis's own, with ACL categories and key specs): an unknown
    // command is Redis's nil bulk; strata's own STRATA command is strata's entry.
    assert_eq!(info.array()[1], Resp::Nil);
    assert_eq!(
        c.call(&["COMMAND", "INFO", "get"]).array()[0].array()[6],
        Resp::Array(vec![
            Resp::status("@read"),
            Resp::status("@string"),
            Resp::status("@fast")
        ])
    );
    let info = c.call(&["COMMAND", "INFO", "strata", "get"]);
    assert_eq!(info.array()[0].array()[0], Resp::bulk("strata"));
    assert_eq!(info.array()[1].array()[0], Resp::bulk("get"));
    let names = c.call(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "str*"]);
    assert!(names.array().contains(&Resp::bulk("strata")), "{names:?}");
    assert!(names.array().contains(&Resp::bulk("strlen")), "{names:?}");
    let names = c.call(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "string"]);
    assert!(!names.array().contains(&Resp::bulk("strata")), "{names:?}");

    assert_eq!(
        c.call(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]),
        Resp::bulks(&["a", "b"])
    );
    assert_eq!(
        c.call(&["COMMAND", "GETKEYS", "EVAL", "return 1", "2", "x", "y", "arg"]),
        Resp::bulks(&["x", "y"])
    );
    assert_eq!(
        c.call(&["COMMAND", "GETKEYS", "PING", "x"]),
        Resp::err("ERR The command has no key arguments")
    );
    assert_eq!(
        c.call(&["COMMAND", "GETKEYS", "nosuch", "x"]),
        Resp::err("ERR Invalid command specified")
    );
    // DOCS comes from a node: Redis's own help for GET.
    let docs = c.call(&["COMMAND", "DOCS", "get"]);
    assert_eq!(docs.array()[0], Resp::bulk("get"), "{docs:?}");
}

#[test]
fn time_is_now() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    let reply = c.call(&["TIME"]);
    let parts = reply.array();
    assert_eq!(parts.len(), 2, "{reply:?}");
    assert!(matches!(parts[0], Resp::Bulk(_)) && matches!(parts[1], Resp::Bulk(_)));
    let secs: u64 = parts[0].text().parse().expect("seconds");
    let micros: u64 = parts[1].text().parse().expect("microseconds");
    assert!(micros < 1_000_000);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        secs.abs_diff(now) <= 5,
        "TIME says {secs}, clock says {now}"
    );
}

#[test]
fn info_sections_and_keyspace_sum() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    for i in 0..57 {
        assert_eq!(c.call(&["SET", &format!("info:{i}"), "x"]), Resp::ok());
    }
    assert_eq!(c.call(&["EXPIRE", "info:0", "1000"]), Resp::Int(1));
    assert_eq!(c.call(&["EXPIRE", "info:1", "1000"]), Resp::Int(1));
    let on_nodes: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(on_nodes, 57);

    let info = c.call(&["INFO"]).text();
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Keyspace",
        "# Nodes",
        "# Ring",
    ] {
        assert!(
            info.lines().any(|l| l == section),
            "no {section} in INFO:\n{info}"
        );
    }
    let db0: Vec<&str> = info.lines().filter(|l| l.starts_with("db0:")).collect();
    assert_eq!(db0.len(), 1, "{info}");
    assert!(db0[0].starts_with("db0:keys=57,expires=2,"), "{}", db0[0]);
    assert!(info.contains("\r\n"), "INFO lines end with CRLF");
    assert!(info.contains(&format!("tcp_port:{}\r\n", strata.port())));
    for (i, node) in nodes.iter().enumerate() {
        let line = format!("node_node{}:addr={},", i + 1, node.addr());
        assert!(info.contains(&line), "no {line} in INFO:\n{info}");
    }
    assert!(info.contains("ring_nodes:3\r\n"), "{info}");

    // One section only.
    let keyspace = c.call(&["INFO", "keyspace"]).text();
    assert!(keyspace.starts_with("# Keyspace\r\n"), "{keyspace}");
    assert!(keyspace.contains("db0:keys=57,"), "{keyspace}");
    assert!(!keyspace.contains("# Server"));
    let server = c.call(&["INFO", "server"]).text();
    assert!(server.starts_with("# Server\r\n") && !server.contains("# Keyspace"));
}

#[test]
fn config_get_for_tools() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    assert_eq!(
        c.call(&["CONFIG", "GET", "save"]),
        Resp::bulks(&["save", ""])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "appendonly"]),
        Resp::bulks(&["appendonly", "no"])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "port"]),
        Resp::bulks(&["port".to_string(), strata.port().to_string()])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "no-such-thing"]),
        Resp::Array(vec![])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET"]),
        Resp::err("ERR wrong number of arguments for 'config|get' command")
    );
}

#[test]
fn unknown_arity_and_unsupported_errors() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();

    assert_eq!(
        c.call(&["foo", "a", "b"]),
        Resp::err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(
        c.call(&["foo"]),
        Resp::err("ERR unknown command 'foo', with args beginning with: ")
    );
    assert_eq!(
        c.call(&["GET"]),
        Resp::err("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        c.call(&["set", "k"]),
        Resp::err("ERR wrong number of arguments for 'set' command")
    );

    for (args, name) in [
        (&["MONITOR"][..], "monitor"),
        (&["SWAPDB", "0", "1"][..], "swapdb"),
    ] {
        assert_eq!(
            c.call(args),
            Resp::Error(format!(
                "ERR strata: '{name}' is not supported through the proxy"
            )),
            "{args:?}"
        );
        // The connection stays usable.
        assert_eq!(c.call(&["PING"]), Resp::status("PONG"), "after {args:?}");
    }
}

/// Sets a few keys straight on the nodes; returns how many.
fn seed(nodes: &[RedisNode]) -> i64 {
    for (i, node) in nodes.iter().enumerate() {
        let mut con = node.conn();
        let _: () = redis::cmd("SET")
            .arg(format!("seed:{i}"))
            .arg("x")
            .query(&mut con)
            .unwrap();
    }
    nodes.len() as i64
}

#[test]
fn dangerous_commands_refused_when_not_allowed() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section("security: {allow_dangerous_commands: false}")
        .start();
    let mut c = strata.raw();
    let seeded = seed(&nodes);

    for args in [
        &["FLUSHALL"][..],
        &["FLUSHDB"][..],
        &["flushdb", "ASYNC"][..],
        &["KEYS", "*"][..],
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"][..],
    ] {
        let reply = c.call(args);
        let text = reply.error_text();
        assert!(
            text.starts_with("ERR ") && text.contains("allow_dangerous_commands"),
            "{args:?}: {text}"
        );
    }
    // Nothing reached the nodes.
    let left: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(left, seeded);
    for node in &nodes {
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut node.conn())
            .unwrap();
        assert_eq!(policy, ["maxmemory-policy", "noeviction"]);
    }
    // Harmless commands still work, and so does SCAN (the safe way to list keys).
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(seeded));
    assert_eq!(
        c.call(&["CONFIG", "GET", "save"]),
        Resp::bulks(&["save", ""])
    );
    let scan = c.call(&["SCAN", "0", "COUNT", "1000"]);
    assert_eq!(scan.array().len(), 2, "{scan:?}");
}

#[test]
fn dangerous_commands_allowed_when_configured() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section("security: {allow_dangerous_commands: true}")
        .start();
    let mut c = strata.raw();
    let seeded = seed(&nodes);

    let keys = c.call(&["KEYS", "seed:*"]);
    let mut keys: Vec<String> = keys.array().iter().map(Resp::text).collect();
    keys.sort();
    assert_eq!(keys, ["seed:0", "seed:1", "seed:2"]);
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(seeded));

    assert_eq!(
        c.call(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        Resp::ok()
    );
    for node in &nodes {
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut node.conn())
            .unwrap();
        assert_eq!(policy, ["maxmemory-policy", "allkeys-lru"]);
    }
    // A node's refusal comes back as the reply.
    let bad = c.call(&["CONFIG", "SET", "maxmemory-policy", "nonsense"]);
    assert!(bad.error_text().starts_with("ERR "), "{bad:?}");

    assert_eq!(c.call(&["FLUSHDB"]), Resp::ok());
    assert!(nodes.iter().all(|n| n.dbsize() == 0));
    seed(&nodes);
    assert_eq!(c.call(&["FLUSHALL"]), Resp::ok());
    assert!(nodes.iter().all(|n| n.dbsize() == 0));
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(0));
}

#[test]
fn scripts_are_loaded_on_every_node() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();

    let body = "return {KEYS[1], ARGV[1]}";
    let sha = c.call(&["SCRIPT", "LOAD", body]).text();
    assert_eq!(sha.len(), 40, "{sha}");
    for node in &nodes {
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(&mut node.conn())
            .unwrap();
        assert_eq!(exists, [1], "script missing on {}", node.addr());
    }
    assert_eq!(
        c.call(&[
            "SCRIPT",
            "EXISTS",
            &sha,
            "0000000000000000000000000000000000000000"
        ]),
        Resp::Array(vec![Resp::Int(1), Resp::Int(0)])
    );
    // EVALSHA works whichever node the key lives on.
    for n in 0..3 {
        let k = strata.key_on(n, "sha:", &[]);
        assert_eq!(
            c.call(&["EVALSHA", &sha, "1", &k, "arg"]),
            Resp::bulks(&[&k, "arg"])
        );
    }

    assert_eq!(c.call(&["SCRIPT", "FLUSH"]), Resp::ok());
    assert_eq!(
        c.call(&["SCRIPT", "EXISTS", &sha]),
        Resp::Array(vec![Resp::Int(0)])
    );
    let k = strata.key_on(1, "sha:", &[]);
    assert_eq!(
        c.call(&["EVALSHA", &sha, "1", &k, "arg"]),
        Resp::err("NOSCRIPT No matching script. Please use EVAL.")
    );
}
