//! Multi-key commands split per node and merged back: MSET/MGET in argument order, DEL, EXISTS,
//! TOUCH and UNLINK counts summed over the nodes, checked against the nodes themselves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{RedisNode, Resp, Strata};

/// `MSET k0 v0 k1 v1 ...` as arguments.
fn mset_args(keys: &[String]) -> Vec<String> {
    let mut args = vec!["MSET".to_string()];
    for k in keys {
        args.push(k.clone());
        args.push(format!("val-of-{k}"));
    }
    args
}

#[test]
fn mset_then_mget_in_argument_order() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let keys: Vec<String> = (0..50).map(|i| format!("mk:{i}")).collect();
    let mut owners = [0usize; 3];
    for k in &keys {
        owners[strata.owner(k)] += 1;
    }
    assert!(
        owners.iter().all(|&n| n > 0),
        "50 keys should span 3 nodes: {owners:?}"
    );

    assert_eq!(client.call(&mset_args(&keys)), Resp::ok());
    for (n, node) in nodes.iter().enumerate() {
        assert_eq!(node.dbsize(), owners[n] as i64, "node{}", n + 1);
        for k in keys.iter().filter(|k| strata.owner(k) == n) {
            assert_eq!(
                node.get(k),
                Some(format!("val-of-{k}")),
                "{k} on node{}",
                n + 1
            );
        }
    }

    // Present and missing keys, shuffled; one key asked twice.
    let mut wanted: Vec<String> = keys.clone();
    wanted.extend((0..10).map(|i| format!("missing:{i}")));
    wanted.push(keys[7].clone());
    common::shuffle(&mut wanted, 42);
    let mut args = vec!["MGET".to_string()];
    args.extend(wanted.iter().cloned());
    let expected = Resp::Array(
        wanted
            .iter()
            .map(|k| {
                if k.starts_with("mk:") {
                    Resp::bulk(format!("val-of-{k}"))
                } else {
                    Resp::Nil
                }
            })
            .collect(),
    );
    assert_eq!(client.call(&args), expected);

    // Keys all on one node are forwarded as they are; same answer shape.
    let node0: Vec<&String> = keys.iter().filter(|k| strata.owner(k) == 0).collect();
    let reply = client.call(&["MGET", node0[0], "missing:x", node0[1]]);
    assert_eq!(
        reply,
        Resp::Array(vec![
            Resp::bulk(format!("val-of-{}", node0[0])),
            Resp::Nil,
            Resp::bulk(format!("val-of-{}", node0[1])),
        ])
    );

    // Overwrite through MSET across nodes, read through the nodes.
    assert_eq!(
        client.call(&["MSET", &keys[0], "new0", &keys[1], "new1", &keys[2], "new2"]),
        Resp::ok()
    );
    for k in &keys[..3] {
        let n = strata.owner(k);
        let idx = &k[3..];
        assert_eq!(nodes[n].get(k), Some(format!("new{idx}")));
    }

    // MSET needs pairs.
    assert_eq!(
        client.call(&["MSET", "a", "1", "b"]),
        Resp::err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        client.call(&["MGET"]),
        Resp::err("ERR wrong number of arguments for 'mget' command")
    );
    assert!(!nodes.iter().any(|n| n.exists("a")));
}

#[test]
fn del_sums_over_nodes() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let keys: Vec<String> = (0..40).map(|i| format!("del:{i}")).collect();
    assert_eq!(client.call(&mset_args(&keys)), Resp::ok());

    let mut args = vec!["DEL".to_string()];
    args.extend(keys[..30].iter().cloned());
    args.extend((0..5).map(|i| format!("nope:{i}")));
    assert_eq!(client.call(&args), Resp::Int(30));
    assert_eq!(client.call(&args), Resp::Int(0));

    let left: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(left, 10);
    for k in &keys[30..] {
        assert!(nodes[strata.owner(k)].exists(k), "{k} should survive");
    }
    for k in &keys[..30] {
        assert!(!nodes.iter().any(|n| n.exists(k)), "{k} should be gone");
    }
}

#[test]
fn exists_counts_duplicates_like_redis() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let a = strata.key_on(0, "ex:", &[]);
    let b = strata.key_on(1, "ex:", &[]);
    let c = strata.key_on(2, "ex:", &[]);
    let a2 = strata.key_on(0, "ex:", std::slice::from_ref(&a));
    for k in [&a, &b, &c, &a2] {
        assert_eq!(client.call(&["SET", k, "1"]), Resp::ok());
    }

    // Across nodes, `a` twice.
    assert_eq!(
        client.call(&["EXISTS", &a, &b, &a, "ex:missing"]),
        Resp::Int(3)
    );
    assert_eq!(client.call(&["EXISTS", &a, &b, &c, &a2]), Resp::Int(4));
    // One node (forwarded unchanged), duplicates too.
    assert_eq!(client.call(&["EXISTS", &a, &a, &a2]), Resp::Int(3));
    // What the node itself says for the same list.
    let direct: i64 = redis::cmd("EXISTS")
        .arg(&a)
        .arg(&a)
        .arg(&a2)
        .query(&mut nodes[0].conn())
        .unwrap();
    assert_eq!(direct, 3);
    assert_eq!(client.call(&["EXISTS", "ex:none"]), Resp::Int(0));
}

#[test]
fn touch_and_unlink_counts() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let keys: Vec<String> = (0..20).map(|i| format!("tu:{i}")).collect();
    assert_eq!(client.call(&mset_args(&keys)), Resp::ok());

    let mut touch = vec!["TOUCH".to_string()];
    touch.extend(keys.iter().cloned());
    touch.push("tu:missing".into());
    assert_eq!(client.call(&touch), Resp::Int(20));

    let mut unlink = vec!["UNLINK".to_string()];
    unlink.extend(keys[..12].iter().cloned());
    unlink.push("tu:missing".into());
    assert_eq!(client.call(&unlink), Resp::Int(12));
    assert_eq!(client.call(&unlink), Resp::Int(0));

    let total: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(total, 8);
    assert_eq!(client.call(&touch), Resp::Int(8));
    for k in &keys[12..] {
        assert!(nodes[strata.owner(k)].exists(k));
    }
}

#[test]
fn wrong_type_replies_pass_through() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let a = strata.key_on(0, "wt:", &[]);
    let b = strata.key_on(1, "wt:", &[]);

    assert_eq!(client.call(&["SET", &a, "1"]), Resp::ok());
    assert_eq!(client.call(&["LPUSH", &b, "x"]), Resp::Int(1));
    // MGET across nodes gives nil for a key of another type, like Redis.
    assert_eq!(
        client.call(&["MGET", &a, &b]),
        Resp::Array(vec![Resp::bulk("1"), Resp::Nil])
    );
    // A node's error reply comes back byte for byte.
    let direct = common::RawClient::connect(&nodes[1].addr()).call(&["INCR", &b]);
    assert!(direct.error_text().starts_with("WRONGTYPE"), "{direct:?}");
    assert_eq!(client.call(&["INCR", &b]), direct);
}

#[test]
fn binary_values_survive_the_split() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    // Values with CRLF, NUL and high bytes; keys spread over the nodes.
    let keys: Vec<String> = (0..12).map(|i| format!("bin:{i}")).collect();
    let values: Vec<Vec<u8>> = (0..12u8)
        .map(|i| vec![b'\r', b'\n', 0, i, 0xff, b'$', b'*', b'\r', b'\n'])
        .collect();
    let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for (k, v) in keys.iter().zip(&values) {
        mset.push(k.as_bytes().to_vec());
        mset.push(v.clone());
    }
    assert_eq!(client.call(&mset), Resp::ok());
    let mut mget: Vec<Vec<u8>> = vec![b"MGET".to_vec()];
    mget.extend(keys.iter().rev().map(|k| k.as_bytes().to_vec()));
    let expected = Resp::Array(values.iter().rev().map(Resp::bulk).collect());
    assert_eq!(client.call(&mget), expected);
    for (k, v) in keys.iter().zip(&values) {
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(k)
            .query(&mut nodes[strata.owner(k)].conn())
            .unwrap();
        assert_eq!(&stored, v, "{k}");
    }
}

#[test]
fn large_mget_over_many_keys() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let keys: Vec<String> = (0..5000).map(|i| format!("many:{i}")).collect();
    assert_eq!(client.call(&mset_args(&keys)), Resp::ok());
    let mut args = vec!["MGET".to_string()];
    for (i, k) in keys.iter().enumerate() {
        args.push(k.clone());
        if i % 10 == 0 {
            args.push(format!("absent:{i}"));
        }
    }
    let reply = client.call(&args);
    let items = reply.array();
    assert_eq!(items.len(), args.len() - 1);
    for (arg, item) in args[1..].iter().zip(items) {
        if arg.starts_with("many:") {
            assert_eq!(item, &Resp::bulk(format!("val-of-{arg}")), "{arg}");
        } else {
            assert_eq!(item, &Resp::Nil, "{arg}");
        }
    }
    let mut del = vec!["DEL".to_string()];
    del.extend(args[1..].iter().cloned());
    assert_eq!(client.call(&del), Resp::Int(5000));
    assert!(nodes.iter().all(|n| n.dbsize() == 0));
}
