//! MULTI / EXEC / DISCARD / WATCH over real Redis nodes: queued replies, the node's EXEC reply,
//! atomicity against a concurrent writer, CROSSSLOT with nothing run, EXECABORT after a queue
//! time error, WATCH aborting when another client touches the key, Redis's error texts, and a
//! replicated layer's transaction reaching every replica.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{poll_until, RedisNode, Resp, Strata, DEADLINE};

fn queued() -> Resp {
    Resp::Status("QUEUED".into())
}

#[test]
fn exec_runs_the_queued_commands_on_their_node_and_returns_its_replies() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    assert_eq!(c.call(&["MULTI"]), Resp::ok());
    assert_eq!(c.call(&["SET", "{u}:a", "1"]), queued());
    assert_eq!(c.call(&["INCR", "{u}:a"]), queued());
    assert_eq!(c.call(&["GET", "{u}:a"]), queued());
    assert_eq!(
        c.call(&["EXEC"]),
        Resp::Array(vec![Resp::ok(), Resp::Int(2), Resp::bulk("2")])
    );
    let owner = strata.owner("{u}:a");
    assert_eq!(nodes[owner].get("{u}:a").as_deref(), Some("2"));
    // DISCARD drops the queue.
    assert_eq!(c.call(&["MULTI"]), Resp::ok());
    assert_eq!(c.call(&["SET", "{u}:a", "9"]), queued());
    assert_eq!(c.call(&["DISCARD"]), Resp::ok());
    assert_eq!(c.call(&["GET", "{u}:a"]), Resp::bulk("2"));
}

#[test]
fn a_transaction_is_atomic_against_a_concurrent_writer() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = strata.addr().to_string();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = common::RawClient::connect(&addr);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                c.call(&["INCR", "counter"]);
                n += 1;
            }
        })
    };
    let mut c = strata.raw();
    for _ in 0..50 {
        c.call(&["MULTI"]);
        for _ in 0..5 {
            assert_eq!(c.call(&["INCR", "counter"]), queued());
        }
        let got: Vec<i64> = match c.call(&["EXEC"]) {
            Resp::Array(items) => items
                .iter()
                .map(|r| match r {
                    Resp::Int(n) => *n,
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        };
        for pair in got.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "interleaved: {got:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn keys_on_two_nodes_are_refused_and_nothing_runs() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let a = strata.key_on(0, "t:", &[]);
    let b = strata.key_on(1, "t:", &[]);
    let mut c = strata.raw();
    c.call(&["MULTI"]);
    c.call(&["SET", &a, "1"]);
    c.call(&["SET", &b, "1"]);
    assert_eq!(
        c.call(&["EXEC"]).error_text(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    assert!(!nodes.iter().any(|n| n.exists(&a) || n.exists(&b)));
    // The session is out of MULTI again.
    assert_eq!(c.call(&["EXEC"]).error_text(), "ERR EXEC without MULTI");
}

#[test]
fn queue_time_errors_abort_the_transaction_with_redis_texts() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    assert_eq!(c.call(&["EXEC"]).error_text(), "ERR EXEC without MULTI");
    assert_eq!(
        c.call(&["DISCARD"]).error_text(),
        "ERR DISCARD without MULTI"
    );
    c.call(&["MULTI"]);
    assert_eq!(
        c.call(&["MULTI"]).error_text(),
        "ERR MULTI calls can not be nested"
    );
    assert_eq!(
        c.call(&["WATCH", "k"]).error_text(),
        "ERR WATCH inside MULTI is not allowed"
    );
    assert_eq!(c.call(&["SET", "x", "1"]), queued());
    assert_eq!(
        c.call(&["GET"]).error_text(),
        "ERR wrong number of arguments for 'get' command"
    );
    assert!(c
        .call(&["NOSUCH"])
        .error_text()
        .starts_with("ERR unknown command 'NOSUCH'"));
    assert_eq!(
        c.call(&["EXEC"]).error_text(),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert!(!nodes[0].exists("x"), "an aborted transaction ran");
}

#[test]
fn watch_aborts_when_another_client_touches_the_key() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut a = strata.raw();
    let mut b = strata.raw();
    assert_eq!(a.call(&["SET", "balance", "10"]), Resp::ok());
    assert_eq!(a.call(&["WATCH", "balance"]), Resp::ok());
    a.call(&["MULTI"]);
    a.call(&["SET", "balance", "20"]);
    assert_eq!(b.call(&["SET", "balance", "15"]), Resp::ok());
    assert_eq!(a.call(&["EXEC"]), Resp::NilArray);
    assert_eq!(a.call(&["GET", "balance"]), Resp::bulk("15"));
    // Untouched, the same transaction runs; UNWATCH ends a watch without a transaction.
    assert_eq!(a.call(&["WATCH", "balance"]), Resp::ok());
    a.call(&["MULTI"]);
    a.call(&["SET", "balance", "20"]);
    assert_eq!(a.call(&["EXEC"]), Resp::Array(vec![Resp::ok()]));
    assert_eq!(a.call(&["WATCH", "balance"]), Resp::ok());
    assert_eq!(a.call(&["UNWATCH"]), Resp::ok());
    // A watched key and a transaction on another node: CROSSSLOT.
    let other = (0..3)
        .map(|n| strata.key_on(n, "w:", &[]))
        .find(|k| strata.owner(k) != strata.owner("balance"))
        .unwrap();
    assert_eq!(a.call(&["WATCH", "balance"]), Resp::ok());
    a.call(&["MULTI"]);
    a.call(&["SET", &other, "1"]);
    assert_eq!(
        a.call(&["EXEC"]).error_text(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
}

#[test]
fn a_replicated_layers_transaction_reaches_every_replica() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section("layers:\n  - {name: r, prefix: 'r:', replication: 2, write_consistency: quorum, ttl: 5m}")
        .start();
    let mut c = strata.raw();
    c.call(&["MULTI"]);
    c.call(&["SET", "r:{t}1", "a"]);
    c.call(&["SET", "r:{t}2", "b"]);
    assert_eq!(c.call(&["EXEC"]), Resp::Array(vec![Resp::ok(), Resp::ok()]));
    let replicas = strata.ring().preference_list(b"r:{t}1", 2);
    poll_until(DEADLINE, "both replicas to have the transaction", || {
        replicas
            .iter()
            .all(|&n| nodes[n].get("r:{t}2").as_deref() == Some("b"))
            .then_some(())
    });
    // The layer's TTL applies inside the transaction too.
    for &n in &replicas {
        let pttl: i64 = redis::cmd("PTTL")
            .arg("r:{t}1")
            .query(&mut nodes[n].conn())
            .unwrap();
        assert!((290_000..=300_000).contains(&pttl), "node {n}: {pttl}");
    }
}
