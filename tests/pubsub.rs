//! Pub/Sub over real Redis nodes: subscriptions on channels that live on different nodes,
//! pattern subscriptions receiving from every node, shard channels, Redis's confirmation frames
//! with the session's own counts, the commands allowed while subscribed, unsubscribing back to
//! normal, and PUBSUB CHANNELS / NUMSUB / NUMPAT merged over the nodes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

fn frame(kind: &str, parts: &[&str]) -> Resp {
    let mut items = vec![Resp::bulk(kind)];
    items.extend(parts.iter().map(|p| Resp::bulk(*p)));
    Resp::Array(items)
}

fn confirm(kind: &str, name: &str, count: i64) -> Resp {
    Resp::Array(vec![Resp::bulk(kind), Resp::bulk(name), Resp::Int(count)])
}

/// Two channel names owned by different nodes.
fn two_channels(strata: &Strata) -> (String, String) {
    let a = strata.key_on(0, "chan:", &[]);
    let b = strata.key_on(1, "chan:", &[]);
    (a, b)
}

/// Publishes until the subscriber is registered on the channel's node (PUBLISH reports the
/// receivers), then returns.
fn publish_when_heard(publisher: &mut RawClient, channel: &str, message: &str) -> i64 {
    poll_until(
        DEADLINE,
        "a subscriber on the channel's node",
        || match publisher.call(&["PUBSUB", "NUMSUB", channel]) {
            Resp::Array(items) if items.get(1) != Some(&Resp::Int(0)) => Some(()),
            _ => None,
        },
    );
    publisher.call(&["PUBLISH", channel, message]).int()
}

#[test]
fn subscribers_get_messages_from_channels_on_different_nodes() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let (a, b) = two_channels(&strata);
    let mut sub = strata.raw();
    sub.send_cmd(&["SUBSCRIBE", &a, &b]);
    assert_eq!(sub.read_reply(), confirm("subscribe", &a, 1));
    assert_eq!(sub.read_reply(), confirm("subscribe", &b, 2));
    let mut publisher = strata.raw();
    assert_eq!(publish_when_heard(&mut publisher, &a, "one"), 1);
    assert_eq!(publish_when_heard(&mut publisher, &b, "two"), 1);
    assert_eq!(sub.read_reply(), frame("message", &[&a, "one"]));
    assert_eq!(sub.read_reply(), frame("message", &[&b, "two"]));
    // Nobody listens on a third channel.
    assert_eq!(
        publisher.call(&["PUBLISH", "chan:nobody", "x"]),
        Resp::Int(0)
    );

    // Only the pub/sub commands and PING are allowed now.
    sub.send_cmd(&["GET", "k"]);
    assert_eq!(
        sub.read_reply().error_text(),
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    );
    sub.send_cmd(&["PING"]);
    assert_eq!(
        sub.read_reply(),
        Resp::Array(vec![Resp::bulk("pong"), Resp::bulk("")])
    );

    // Unsubscribing from everything counts down, then the connection is normal again.
    sub.send_cmd(&["UNSUBSCRIBE"]);
    let mut left = vec![sub.read_reply(), sub.read_reply()];
    left.sort_by_key(|r| format!("{r:?}"));
    let counts: Vec<Resp> = left.iter().map(|r| r.array()[2].clone()).collect();
    assert!(
        counts.contains(&Resp::Int(1)) && counts.contains(&Resp::Int(0)),
        "{left:?}"
    );
    assert_eq!(sub.call(&["SET", "k", "v"]), Resp::ok());
    sub.send_cmd(&["UNSUBSCRIBE"]);
    assert_eq!(
        sub.read_reply(),
        Resp::Array(vec![Resp::bulk("unsubscribe"), Resp::Nil, Resp::Int(0)])
    );
}

#[test]
fn pattern_subscribers_hear_every_node_and_pubsub_counts_are_merged() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let (a, b) = two_channels(&strata);
    let mut psub = strata.raw();
    psub.send_cmd(&["PSUBSCRIBE", "chan:*"]);
    assert_eq!(psub.read_reply(), confirm("psubscribe", "chan:*", 1));
    let mut publisher = strata.raw();
    poll_until(DEADLINE, "the pattern on every node", || {
        (publisher.call(&["PUBSUB", "NUMPAT"]) == Resp::Int(1)).then_some(())
    });
    assert_eq!(publisher.call(&["PUBLISH", &a, "x"]), Resp::Int(1));
    assert_eq!(publisher.call(&["PUBLISH", &b, "y"]), Resp::Int(1));
    assert_eq!(psub.read_reply(), frame("pmessage", &["chan:*", &a, "x"]));
    assert_eq!(psub.read_reply(), frame("pmessage", &["chan:*", &b, "y"]));

    let mut sub = strata.raw();
    sub.send_cmd(&["SUBSCRIBE", &a, &b]);
    sub.read_reply();
    sub.read_reply();
    poll_until(DEADLINE, "both channels active", || {
        let channels = publisher.call(&["PUBSUB", "CHANNELS"]);
        (channels.array().len() == 2).then_some(())
    });
    assert_eq!(
        publisher.call(&["PUBSUB", "NUMSUB", &a, &b, "chan:none"]),
        Resp::Array(vec![
            Resp::bulk(&a),
            Resp::Int(1),
            Resp::bulk(&b),
            Resp::Int(1),
            Resp::bulk("chan:none"),
            Resp::Int(0)
        ])
    );
}

#[test]
fn shard_channels_use_ssubscribe_and_spublish() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut sub = strata.raw();
    sub.send_cmd(&["SSUBSCRIBE", "orders"]);
    assert_eq!(sub.read_reply(), confirm("ssubscribe", "orders", 1));
    let mut publisher = strata.raw();
    poll_until(DEADLINE, "the shard subscriber", || {
        (publisher.call(&["SPUBLISH", "orders", "o1"]) == Resp::Int(1)).then_some(())
    });
    assert_eq!(sub.read_reply(), frame("smessage", &["orders", "o1"]));
    sub.send_cmd(&["SUNSUBSCRIBE", "orders"]);
    assert_eq!(sub.read_reply(), confirm("sunsubscribe", "orders", 0));
    assert_eq!(sub.call(&["PING"]), Resp::Status("PONG".into()));
}

/// Once a client has SUBSCRIBE's confirmation, a message published to the channel reaches it
/// (strata confirms only after the node did), for fresh subscribers again and again.
#[test]
fn a_confirmed_subscription_hears_the_next_publish() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut publisher = strata.raw();
    for round in 0..200 {
        let channel = format!("race:{round}");
        let mut sub = strata.raw();
        assert_eq!(
            sub.call(&["SUBSCRIBE", channel.as_str()]),
            confirm("subscribe", &channel, 1)
        );
        let message = format!("m{round}");
        assert_eq!(
            publisher.call(&["PUBLISH", channel.as_str(), message.as_str()]),
            Resp::Int(1),
            "round {round}: published before the node knew the subscriber"
        );
        assert_eq!(sub.read_reply(), frame("message", &[&channel, &message]));
    }
}
