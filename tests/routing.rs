//! Key placement over real Redis nodes: every key on the node the ring names (checked on the
//! nodes themselves), hash tags, `STRATA RING`, and `CROSSSLOT` for multi-key commands whose keys
//! live on different nodes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{RedisNode, Resp, Strata};

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

#[test]
fn every_key_lives_only_on_its_primary_node() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    let keys: Vec<String> = (0..300).map(|i| format!("route:{i}")).collect();
    // One pipelined write of 300 SETs, then the 300 replies.
    let mut batch = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        batch.extend(common::encode_cmd(&["SET", k, &format!("v{i}")]));
    }
    client.send(&batch);
    for k in &keys {
        assert_eq!(client.read_reply(), Resp::ok(), "SET {k}");
    }

    let mut per_node = [0i64; 3];
    for (n, node) in nodes.iter().enumerate() {
        // One MGET per node, straight on the node: a value exactly where the ring says.
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut node.conn())
            .unwrap();
        for (i, (k, v)) in keys.iter().zip(values).enumerate() {
            if strata.owner(k) == n {
                assert_eq!(
                    v,
                    Some(format!("v{i}")),
                    "{k} missing on its owner node{}",
                    n + 1
                );
                per_node[n] += 1;
            } else {
                assert_eq!(v, None, "{k} found on node{} but owned by another", n + 1);
            }
        }
        assert_eq!(node.dbsize(), per_node[n], "node{} holds other keys", n + 1);
    }
    assert_eq!(per_node.iter().sum::<i64>(), 300);
    for (n, count) in per_node.iter().enumerate() {
        assert!(*count > 30, "node{} got only {count} of 300 keys", n + 1);
    }

    // And strata reads every one of them back.
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(client.call(&["GET", k]), Resp::bulk(format!("v{i}")));
    }
}

#[test]
fn hash_tags_keep_keys_together() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    assert_eq!(client.call(&["SET", "{user1}:a", "1"]), Resp::ok());
    assert_eq!(client.call(&["SET", "{user1}:b", "2"]), Resp::ok());
    let owner = strata.owner("user1");
    assert_eq!(strata.owner("{user1}:a"), owner);
    assert_eq!(strata.owner("{user1}:b"), owner);
    for (n, node) in nodes.iter().enumerate() {
        let here = n == owner;
        assert_eq!(node.get("{user1}:a").is_some(), here, "node{}", n + 1);
        assert_eq!(node.get("{user1}:b").is_some(), here, "node{}", n + 1);
    }

    // Many tags: the members of each tag share a node, and the tags as a whole use every node.
    let mut used = [false; 3];
    for t in 0..30 {
        let members: Vec<String> = (0..4).map(|m| format!("pre{m}:{{tag{t}}}:post")).collect();
        for m in &members {
            assert_eq!(client.call(&["SET", m, "x"]), Resp::ok());
        }
        let owner = strata.owner(&format!("tag{t}"));
        used[owner] = true;
        for m in &members {
            assert_eq!(nodes[owner].get(m).as_deref(), Some("x"), "{m}");
        }
    }
    assert_eq!(used, [true; 3], "30 tags should reach all 3 nodes");

    // An empty tag `{}` hashes the whole key.
    assert_eq!(strata.ring().hashed_part(b"{}x"), b"{}x");
}

#[test]
fn strata_ring_names_the_owner_first() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    for key in ["a", "b", "route:abc", "{user1}:name", "k:42", "zzz"] {
        let reply = client.call(&["STRATA", "RING", key]);
        let items = reply.array();
        assert_eq!(items.len(), 8, "{reply:?}");
        assert_eq!(items[0], Resp::bulk("key"));
        assert_eq!(items[1], Resp::bulk(key));
        assert_eq!(items[2], Resp::bulk("hashed"));
        assert_eq!(
            items[3],
            Resp::bulk(strata.ring().hashed_part(key.as_bytes()))
        );
        assert_eq!(items[4], Resp::bulk("point"));
        assert_eq!(
            items[5],
            Resp::bulk(format!("{:016x}", strata.ring().key_hash(key.as_bytes())))
        );
        assert_eq!(items[6], Resp::bulk("preference"));
        let pref: Vec<String> = items[7].array().iter().map(Resp::text).collect();
        let owner = strata.owner(key);
        assert_eq!(pref[0], format!("node{}", owner + 1), "{key}: {pref:?}");
        let mut sorted = pref.clone();
        sorted.sort();
        assert_eq!(sorted, ["node1", "node2", "node3"], "{key}: {pref:?}");

        // The owner really is where the key lands.
        assert_eq!(client.call(&["SET", key, "here"]), Resp::ok());
        assert_eq!(nodes[owner].get(key).as_deref(), Some("here"));
    }
    assert_eq!(
        client.call(&["STRATA", "RING", "{user1}:name"]).array()[3],
        Resp::bulk("user1")
    );
    assert_eq!(
        client.call(&["STRATA", "RING"]),
        Resp::err("ERR wrong number of arguments for 'strata|ring' command")
    );
}

/// Two keys owned by different nodes, and one more key owned by the first one's node.
fn split_keys(strata: &Strata, prefix: &str) -> (String, String, String) {
    let a = strata.key_on(0, prefix, &[]);
    let b = strata.key_on(1, prefix, &[]);
    let c = strata.key_on(0, prefix, std::slice::from_ref(&a));
    (a, b, c)
}

#[test]
fn rename_across_nodes_is_crossslot() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let (a, b, same) = split_keys(&strata, "ren:");

    assert_eq!(client.call(&["SET", &a, "va"]), Resp::ok());
    assert_eq!(client.call(&["RENAME", &a, &b]), Resp::err(CROSSSLOT));
    assert_eq!(client.call(&["RENAMENX", &a, &b]), Resp::err(CROSSSLOT));
    // Nothing was sent: the key is still where it was.
    assert_eq!(nodes[0].get(&a).as_deref(), Some("va"));
    assert!(!nodes[1].exists(&b));

    // Same node: Redis does it.
    assert_eq!(client.call(&["RENAME", &a, &same]), Resp::ok());
    assert_eq!(nodes[0].get(&same).as_deref(), Some("va"));
    assert!(!nodes[0].exists(&a));
    assert_eq!(client.call(&["GET", &same]), Resp::bulk("va"));

    // Hash tags put both names on one node whatever the rest of the key.
    assert_eq!(client.call(&["SET", "{t}a", "tagged"]), Resp::ok());
    assert_eq!(client.call(&["RENAME", "{t}a", "{t}b"]), Resp::ok());
    assert_eq!(client.call(&["GET", "{t}b"]), Resp::bulk("tagged"));
    assert_eq!(client.call(&["EXISTS", "{t}a"]), Resp::Int(0));
    assert_eq!(
        nodes[strata.owner("t")].get("{t}b").as_deref(),
        Some("tagged")
    );
}

#[test]
fn sinterstore_across_nodes_is_crossslot() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let (s1, s2, dst) = split_keys(&strata, "set:");

    assert_eq!(client.call(&["SADD", &s1, "a", "b", "c"]), Resp::Int(3));
    assert_eq!(client.call(&["SADD", &s2, "b", "c", "d"]), Resp::Int(3));
    assert_eq!(
        client.call(&["SINTERSTORE", &dst, &s1, &s2]),
        Resp::err(CROSSSLOT)
    );
    assert_eq!(client.call(&["SINTER", &s1, &s2]), Resp::err(CROSSSLOT));
    assert!(!nodes[0].exists(&dst));

    assert_eq!(client.call(&["SADD", "{s}1", "a", "b", "c"]), Resp::Int(3));
    assert_eq!(client.call(&["SADD", "{s}2", "b", "c", "d"]), Resp::Int(3));
    assert_eq!(
        client.call(&["SINTERSTORE", "{s}dst", "{s}1", "{s}2"]),
        Resp::Int(2)
    );
    let members = client.call(&["SMEMBERS", "{s}dst"]);
    let mut members: Vec<String> = members.array().iter().map(Resp::text).collect();
    members.sort();
    assert_eq!(members, ["b", "c"]);
    let mut con = nodes[strata.owner("s")].conn();
    let card: i64 = redis::cmd("SCARD").arg("{s}dst").query(&mut con).unwrap();
    assert_eq!(card, 2);
}

#[test]
fn eval_with_keys_on_two_nodes_is_crossslot() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let (a, b, same) = split_keys(&strata, "ev:");
    let script = "redis.call('set', KEYS[1], ARGV[1]); redis.call('set', KEYS[2], ARGV[1]); return {KEYS[1], KEYS[2]}";

    assert_eq!(
        client.call(&["EVAL", script, "2", &a, &b, "x"]),
        Resp::err(CROSSSLOT)
    );
    assert!(!nodes[0].exists(&a));
    assert!(!nodes[1].exists(&b));

    assert_eq!(
        client.call(&["EVAL", script, "2", &a, &same, "x"]),
        Resp::bulks(&[&a, &same])
    );
    assert_eq!(nodes[0].get(&a).as_deref(), Some("x"));
    assert_eq!(nodes[0].get(&same).as_deref(), Some("x"));

    // No keys: runs on some node.
    assert_eq!(client.call(&["EVAL", "return 7", "0"]), Resp::Int(7));
    // A numkeys larger than the arguments: Redis's own error, found before any node is asked.
    assert_eq!(
        client.call(&["EVAL", "return 1", "3", "k"]),
        Resp::err("ERR Number of keys can't be greater than number of args")
    );
}

#[test]
fn msetnx_only_on_one_node() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let (a, b, same) = split_keys(&strata, "nx:");

    assert_eq!(
        client.call(&["MSETNX", &a, "1", &b, "2"]),
        Resp::err(CROSSSLOT)
    );
    for node in &nodes {
        assert!(!node.exists(&a) && !node.exists(&b));
    }

    assert_eq!(client.call(&["MSETNX", &a, "1", &same, "2"]), Resp::Int(1));
    assert_eq!(nodes[0].get(&a).as_deref(), Some("1"));
    assert_eq!(nodes[0].get(&same).as_deref(), Some("2"));
    assert_eq!(client.call(&["MSETNX", &a, "9", &same, "9"]), Resp::Int(0));
    assert_eq!(client.call(&["GET", &a]), Resp::bulk("1"));

    assert_eq!(
        client.call(&["MSETNX", "{m}x", "1", "{m}y", "2"]),
        Resp::Int(1)
    );
    assert_eq!(nodes[strata.owner("m")].get("{m}y").as_deref(), Some("2"));
}
