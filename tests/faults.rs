//! Node failures: a killed node's keys fail fast with strata's error while the other nodes keep
//! serving on the same connection, a restarted node is used again without restarting strata,
//! a hung (SIGSTOPped) node's requests time out, and a node down at startup comes back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::{encode_cmd, poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// The prefix of strata's error for a request on a node it cannot reach.
fn unavailable(node: &RedisNode, index: usize) -> String {
    format!(
        "ERR strata: node node{} (127.0.0.1:{}) unavailable: ",
        index + 1,
        node.port()
    )
}

fn assert_unavailable(reply: &Resp, prefix: &str) {
    let text = reply.error_text();
    assert!(
        text.starts_with(prefix) && text.len() > prefix.len(),
        "expected {prefix:?}..., got {text:?}"
    );
}

/// One key per node, set through strata: `keys[n]` lives on node `n`.
fn one_key_per_node(strata: &Strata, client: &mut RawClient, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for n in 0..strata.ring().node_count() {
        let k = strata.key_on(n, prefix, &keys);
        assert_eq!(client.call(&["SET", &k, &format!("value-{n}")]), Resp::ok());
        keys.push(k);
    }
    keys
}

/// Sends a command and returns its reply and how long it took.
fn timed(client: &mut RawClient, args: &[&str]) -> (Resp, Duration) {
    let start = Instant::now();
    let reply = client.call(args);
    (reply, start.elapsed())
}

/// Polls (same connection) until `SET key value` succeeds; returns how many errors were seen.
fn wait_until_writable(client: &mut RawClient, key: &str, value: &str) -> usize {
    let mut errors = 0;
    poll_until(
        DEADLINE,
        &format!("SET {key} to succeed again"),
        || match client.call(&["SET", key, value]) {
            Resp::Status(s) if s == "OK" => Some(()),
            Resp::Error(_) => {
                errors += 1;
                None
            }
            other => panic!("unexpected reply to SET while recovering: {other:?}"),
        },
    );
    errors
}

#[test]
fn killed_node_fails_fast_and_comes_back() {
    let mut nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let keys = one_key_per_node(&strata, &mut client, "kill:");
    let port = nodes[1].port();
    let prefix = unavailable(&nodes[1], 1);

    nodes[1].kill();

    let (reply, took) = timed(&mut client, &["GET", &keys[1]]);
    assert_unavailable(&reply, &prefix);
    assert!(took < Duration::from_secs(3), "error took {took:?}");
    // The other nodes answer on the same connection.
    assert_eq!(client.call(&["GET", &keys[0]]), Resp::bulk("value-0"));
    assert_eq!(client.call(&["GET", &keys[2]]), Resp::bulk("value-2"));
    // Anything that needs the dead node fails as a whole rather than returning partial data.
    let (reply, took) = timed(&mut client, &["MGET", &keys[0], &keys[1], &keys[2]]);
    assert_unavailable(&reply, &prefix);
    assert!(took < Duration::from_secs(3), "MGET error took {took:?}");
    assert_unavailable(&client.call(&["DBSIZE"]), &prefix);
    assert_unavailable(&client.call(&["SET", &keys[1], "x"]), &prefix);
    assert_unavailable(&client.call(&["EXISTS", &keys[0], &keys[1]]), &prefix);
    assert_eq!(client.call(&["EXISTS", &keys[0], &keys[2]]), Resp::Int(2));
    // INFO still answers: the keyspace of the nodes that are up, node2 shown down.
    poll_until(DEADLINE, "INFO to show node2 down", || {
        let info = client.call(&["INFO"]).text();
        let line = info
            .lines()
            .find(|l| l.starts_with("node_node2:"))?
            .to_string();
        (line.contains("state=down") && info.contains("db0:keys=2,")).then_some(())
    });

    nodes[1].restart();
    assert_eq!(nodes[1].port(), port);
    assert_eq!(nodes[1].dbsize(), 0, "restarted node comes back empty");

    wait_until_writable(&mut client, &keys[1], "again");
    assert_eq!(client.call(&["GET", &keys[1]]), Resp::bulk("again"));
    assert_eq!(nodes[1].get(&keys[1]).as_deref(), Some("again"));
    assert_eq!(
        client.call(&["MGET", &keys[0], &keys[1], &keys[2]]),
        Resp::bulks(&["value-0", "again", "value-2"])
    );
    assert_eq!(client.call(&["DBSIZE"]), Resp::Int(3));
    // Every worker reconnects: fresh connections (spread over the workers) work too.
    for _ in 0..4 {
        let mut fresh = strata.raw();
        poll_until(DEADLINE, "a fresh client to reach node2", || {
            (fresh.call(&["GET", &keys[1]]) == Resp::bulk("again")).then_some(())
        });
    }
}

#[test]
fn pipelined_requests_survive_a_node_dying_mid_stream() {
    let mut nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let keys = one_key_per_node(&strata, &mut client, "mid:");
    let prefix = unavailable(&nodes[2], 2);

    let total = 3000;
    let mut bytes = Vec::new();
    for i in 0..total {
        bytes.extend(encode_cmd(&["GET", &keys[i % 3]]));
    }
    client.send(&bytes);
    nodes[2].kill();

    let mut failed = 0;
    for i in 0..total {
        let reply = client.read_reply();
        let n = i % 3;
        if n == 2 && reply.is_error() {
            assert_unavailable(&reply, &prefix);
            failed += 1;
        } else {
            assert_eq!(reply, Resp::bulk(format!("value-{n}")), "reply #{i}");
        }
    }
    assert!(failed <= total / 3);
    assert_eq!(client.call(&["GET", &keys[0]]), Resp::bulk("value-0"));
    assert_unavailable(&client.call(&["GET", &keys[2]]), &prefix);
}

/// Resumes a SIGSTOPped node even when the test fails half-way.
struct Stopped<'a>(&'a RedisNode);

impl<'a> Stopped<'a> {
    fn new(node: &'a RedisNode) -> Self {
        node.signal("STOP");
        Stopped(node)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[test]
fn hung_node_times_out_then_recovers() {
    let nodes = RedisNode::start_many(3);
    // timeouts.request is 1s in the test configuration.
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let keys = one_key_per_node(&strata, &mut client, "hang:");
    let prefix = unavailable(&nodes[0], 0);

    {
        let _stopped = Stopped::new(&nodes[0]);
        let (reply, took) = timed(&mut client, &["GET", &keys[0]]);
        assert_unavailable(&reply, &prefix);
        assert!(reply.error_text().contains("timed out"), "{reply:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "timeout after {took:?}, expected about 1s"
        );
        // The other nodes are not held up.
        let (reply, took) = timed(&mut client, &["GET", &keys[1]]);
        assert_eq!(reply, Resp::bulk("value-1"));
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert_eq!(client.call(&["GET", &keys[2]]), Resp::bulk("value-2"));
        // Still hung: still an error, still bounded.
        let (reply, took) = timed(&mut client, &["GET", &keys[0]]);
        assert!(reply.is_error(), "{reply:?}");
        assert!(took < Duration::from_millis(2500), "{took:?}");
    }

    poll_until(DEADLINE, "GET on the resumed node", || {
        (client.call(&["GET", &keys[0]]) == Resp::bulk("value-0")).then_some(())
    });
    assert_eq!(client.call(&["SET", &keys[0], "after"]), Resp::ok());
    assert_eq!(nodes[0].get(&keys[0]).as_deref(), Some("after"));
}

#[test]
fn node_down_at_startup_is_used_once_up() {
    let mut nodes = RedisNode::start_many(2);
    nodes[1].kill();
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let k0 = strata.key_on(0, "boot:", &[]);
    let k1 = strata.key_on(1, "boot:", &[]);
    let prefix = unavailable(&nodes[1], 1);

    assert_eq!(client.call(&["SET", &k0, "up"]), Resp::ok());
    let (reply, took) = timed(&mut client, &["SET", &k1, "x"]);
    assert_unavailable(&reply, &prefix);
    assert!(took < Duration::from_secs(3), "{took:?}");

    nodes[1].restart();
    wait_until_writable(&mut client, &k1, "late");
    assert_eq!(nodes[1].get(&k1).as_deref(), Some("late"));
    assert_eq!(
        client.call(&["MGET", &k0, &k1]),
        Resp::bulks(&["up", "late"])
    );
}

/// A "node" that accepts connections and hangs up at once must not make strata reconnect in a
/// tight loop: reconnects back off, and its keys get strata's error.
#[test]
fn a_node_that_hangs_up_at_once_is_retried_with_backoff() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let strata = common::StrataBuilder::with_addrs(vec![addr.clone()]).start();
    let mut client = strata.raw();
    let reply = client.call(&["GET", "k"]);
    assert!(
        reply
            .error_text()
            .starts_with(&format!("ERR strata: node node1 ({addr}) unavailable: ")),
        "{reply:?}"
    );
    // With backoff (20ms doubling to 200ms in the test config) each of the two workers
    // connects under ten times in 1.5 s; a loop without backoff connects thousands of times.
    let before = accepted.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    let attempts = accepted.load(Ordering::SeqCst) - before;
    assert!(attempts <= 30, "{attempts} reconnects in 1.5 s");
    assert!(
        attempts >= 2,
        "strata stopped retrying ({attempts} reconnects)"
    );
}

/// strata itself held up (SIGSTOP) for longer than the request timeout while the node was
/// answering: once it runs again the reply is read, not taken for a timeout. The node is kept
/// busy for a moment by a script, so the request is in flight when strata stops. Eight rounds:
/// before the fix an unbiased pick between the reply and the timer failed about half of them.
#[test]
fn replies_that_came_while_strata_was_stopped_are_not_timeouts() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section("timeouts: {connect: 500ms, request: 400ms}")
        .workers(1)
        .spawn();
    let mut c = strata.client();
    // About 50 ms of work on the node.
    let busy = "local i = 0 while i < 1000000 do i = i + 1 end return i";
    assert_eq!(c.call(&["EVAL", busy, "0"]), Resp::Int(1_000_000));
    let mut errors = Vec::new();
    for _ in 0..8 {
        c.send_cmd(&["EVAL", busy, "0"]);
        std::thread::sleep(Duration::from_millis(25));
        strata.signal("STOP");
        std::thread::sleep(Duration::from_millis(600));
        strata.signal("CONT");
        let reply = c.read_reply();
        if reply != Resp::Int(1_000_000) {
            errors.push(reply);
        }
    }
    assert!(
        errors.is_empty(),
        "replies taken for timeouts: {errors:?}\n{}",
        strata.log()
    );
}
