//! `CLIENT TRACKING` through strata against real Redis nodes: a tracking client is told of
//! writes through strata (its own and others'), writes made on a node directly, expiries and
//! flushes, in the default mode, OPTIN, NOLOOP and BCAST, by RESP3 push or, for RESP2, as a
//! message to the client it redirects to; the commands' replies and errors are Redis 7.0's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::layers::info;
use common::resp3::Frame;
use common::{poll_until, RawClient, RedisNode, Strata, DEADLINE};

const CONFIG: &str = r#"health: { heartbeat_interval: 100ms, node_timeout: 1s }
stats: { layer_keys_interval: 0s }
security: { allow_dangerous_commands: true }
"#;

fn start(nodes: &[RedisNode], extra: &str) -> Strata {
    Strata::builder(nodes)
        .section(&format!("{CONFIG}{extra}"))
        .start()
}

/// One `# Stats` or `# Clients` field of INFO.
fn stat(c: &mut RawClient, field: &str) -> i64 {
    let text = info(c, "everything");
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix(&format!("{field}:")) {
            return v.parse().unwrap();
        }
    }
    panic!("no {field} in INFO");
}

/// A RESP3 client with tracking on (`options` after `CLIENT TRACKING on`), once the nodes'
/// streams report every key (before that, every read is invalidated right after its reply).
fn tracking(s: &Strata, options: &[&str]) -> RawClient {
    let mut c = s.raw();
    c.call_raw(&["HELLO", "3"]);
    let mut args = vec!["CLIENT", "TRACKING", "on"];
    args.extend_from_slice(options);
    assert_eq!(c.call_raw(&args), b"+OK\r\n".to_vec());
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams to report every key", || {
        (stat(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    c
}

trait CallRaw {
    fn call_raw(&mut self, args: &[&str]) -> Vec<u8>;
}

impl CallRaw for RawClient {
    /// Sends a command and returns the raw bytes of the next frame (a push may come first:
    /// use only where none can be pending).
    fn call_raw(&mut self, args: &[&str]) -> Vec<u8> {
        self.send_cmd(args);
        self.read_frame().unwrap()
    }
}

/// The keys of an `invalidate` push, or `None` for a flush (null); panics on anything else.
fn invalidated(bytes: &[u8]) -> Option<Vec<String>> {
    let (f, _) = Frame::parse(bytes).unwrap().unwrap();
    let Frame::Aggregate(b'>', Some(items)) = f else {
        panic!("not a push: {:?}", String::from_utf8_lossy(bytes));
    };
    assert_eq!(items[0].text(), Some(&b"invalidate"[..]));
    match &items[1] {
        Frame::Line(b'_', _) => None,
        Frame::Aggregate(b'*', Some(keys)) => Some(
            keys.iter()
                .map(|k| String::from_utf8(k.text().unwrap().to_vec()).unwrap())
                .collect(),
        ),
        other => panic!("unexpected payload {other:?}"),
    }
}

/// Frames that arrive within `within` (none is an answer too).
fn frames_within(c: &mut RawClient, within: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        c.set_read_timeout(left.max(Duration::from_millis(1)));
        match c.read_frame() {
            Ok(f) => out.push(f),
            Err(_) => break,
        }
    }
    c.set_read_timeout(Duration::from_secs(10));
    out
}

/// Waits for the next push naming `key` (other pushes in between are skipped: a key may be
/// reported twice, by strata and by its node).
fn expect_invalidation(c: &mut RawClient, key: &str, what: &str) {
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        for f in frames_within(c, Duration::from_millis(200)) {
            match invalidated(&f) {
                Some(keys) if keys.iter().any(|k| k == key) => return,
                _ => {}
            }
        }
    }
    panic!("no invalidation of {key} after {what}");
}

/// Asserts no push naming `key` (or a flush) arrives before a PING's reply.
fn expect_quiet(c: &mut RawClient, key: &str, what: &str) {
    std::thread::sleep(Duration::from_millis(300));
    c.send_cmd(&["PING"]);
    loop {
        let f = c.read_frame().unwrap();
        if f == b"+PONG\r\n" {
            return;
        }
        if let Some(keys) = invalidated(&f) {
            assert!(
                !keys.iter().any(|k| k == key),
                "{key} reported after {what}"
            );
        } else {
            panic!("flush after {what}");
        }
    }
}

#[test]
fn default_mode_is_told_of_writes_through_strata_on_the_node_and_expiry() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "");
    let mut c = tracking(&s, &[]);
    let mut w = s.raw();
    w.call(&["SET", "k", "1"]);

    // Another client's write through strata.
    assert_eq!(c.call_raw(&["GET", "k"]), b"$1\r\n1\r\n".to_vec());
    w.call(&["SET", "k", "2"]);
    expect_invalidation(&mut c, "k", "a write through strata");

    // A write on the node directly.
    assert_eq!(c.call_raw(&["GET", "k"]), b"$1\r\n2\r\n".to_vec());
    let owner = s.owner("k");
    RawClient::connect(&nodes[owner].addr()).call(&["SET", "k", "3", "PX", "1500"]);
    expect_invalidation(&mut c, "k", "a write on the node");

    // The key expiring on the node.
    assert_eq!(c.call_raw(&["GET", "k"]), b"$1\r\n3\r\n".to_vec());
    expect_invalidation(&mut c, "k", "the key's expiry");

    // A key never read is not reported; a missing key read is.
    c.call_raw(&["GET", "absent"]);
    w.call(&["SET", "unread", "1"]);
    w.call(&["SET", "absent", "1"]);
    expect_invalidation(&mut c, "absent", "a write of a missing key it read");
    expect_quiet(&mut c, "unread", "a write of a key it never read");

    let mut probe = s.raw();
    assert_eq!(stat(&mut probe, "tracking_clients"), 1);
    assert!(stat(&mut probe, "strata_tracking_invalidation_messages") >= 4);
}

#[test]
fn own_writes_noloop_optin_and_multi_key_reads() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "");

    // Its own write: the reply, then the invalidation (as Redis 7.0 orders them).
    let mut c = tracking(&s, &[]);
    c.call_raw(&["GET", "own"]);
    assert_eq!(c.call_raw(&["SET", "own", "1"]), b"+OK\r\n".to_vec());
    expect_invalidation(&mut c, "own", "its own write");

    // NOLOOP: not told of its own writes, told of others'.
    let mut n = tracking(&s, &["NOLOOP"]);
    n.call_raw(&["MGET", "n1", "n2"]);
    assert_eq!(n.call_raw(&["SET", "n1", "mine"]), b"+OK\r\n".to_vec());
    expect_quiet(&mut n, "n1", "its own write with NOLOOP");
    s.raw().call(&["SET", "n2", "theirs"]);
    expect_invalidation(&mut n, "n2", "another client's write (MGET's second key)");

    // Reads inside MULTI ... EXEC are tracked too.
    assert_eq!(c.call_raw(&["MULTI"]), b"+OK\r\n".to_vec());
    assert_eq!(c.call_raw(&["GET", "m1"]), b"+QUEUED\r\n".to_vec());
    assert_eq!(c.call_raw(&["EXEC"]), b"*1\r\n_\r\n".to_vec());
    s.raw().call(&["SET", "m1", "1"]);
    expect_invalidation(&mut c, "m1", "a write of a key read in a transaction");

    // OPTIN: only a read right after CLIENT CACHING YES is tracked.
    let mut o = tracking(&s, &["OPTIN"]);
    o.call_raw(&["GET", "o1"]);
    assert_eq!(
        o.call_raw(&["CLIENT", "CACHING", "yes"]),
        b"+OK\r\n".to_vec()
    );
    o.call_raw(&["GET", "o2"]);
    o.call_raw(&["GET", "o3"]);
    let mut w = s.raw();
    w.call(&["MSET", "o1", "1", "o2", "2", "o3", "3"]);
    expect_invalidation(&mut o, "o2", "a write of the key read after CACHING YES");
    expect_quiet(&mut o, "o1", "a write of a key read without CACHING YES");
    expect_quiet(
        &mut o,
        "o3",
        "a write of a key read after the CACHING'd one",
    );
}

/// The invalidation of a client's own write leaves in the same write as the reply (after it),
/// as Redis writes them: a client that looks at its socket for pushes before serving a read
/// from memory (redis-py, node-redis) finds it there once it has the reply, and never reads
/// the value from before its own write. Against a node first (what Redis does), then through
/// strata, which used to send it a pass later, in a write of its own.
#[test]
fn own_write_invalidation_arrives_with_the_reply() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "");
    let mut direct = RawClient::connect(&nodes[0].addr());
    direct.call_raw(&["HELLO", "3"]);
    assert_eq!(
        direct.call_raw(&["CLIENT", "TRACKING", "on"]),
        b"+OK\r\n".to_vec()
    );
    let mut through = tracking(&s, &[]);
    for (what, c) in [("a node", &mut direct), ("strata", &mut through)] {
        for i in 0..200 {
            let (_, before_read, with_read) = call_seeing_pushes(c, &["GET", "own"]);
            let value = i.to_string();
            let (reply, before, with_reply) = call_seeing_pushes(c, &["SET", "own", &value]);
            assert_eq!(reply, b"+OK\r\n".to_vec(), "{what}, write {i}");
            // Through strata, a node's report of the previous write may come in after the
            // GET's reply: the client is told then, before its SET's reply, and the key is no
            // longer its to be told of again. That does too: it read nothing since. The
            // report may also come while the GET is answered: its notice then goes out with
            // the GET's reply (the key read is taken from the table), and nothing more is
            // owed for the SET.
            let told = |pushes: &Pushes| {
                pushes
                    .iter()
                    .any(|k| k.as_ref().is_none_or(|k| k.iter().any(|k| k == "own")))
            };
            let ok = told(&with_reply) || told(&before) || (what == "strata" && told(&with_read));
            let after: Vec<String> = if ok {
                Vec::new()
            } else {
                frames_within(c, Duration::from_millis(300))
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect()
            };
            assert!(
                ok,
                "{what}, write {i}: the reply of the client's own SET came without its \
                 invalidation (pushes with it: {with_reply:?}, before it: {before:?}, with \
                 the GET before: {with_read:?}, before that GET: {before_read:?}; after: {after:?})"
            );
        }
    }
}

/// The pushes of some frames: each one's keys, `None` for a flush.
type Pushes = Vec<Option<Vec<String>>>;

/// Sends a command and reads its reply; returns it with the pushes that came before it and
/// those that came in the same read as it (behind it).
fn call_seeing_pushes(c: &mut RawClient, args: &[&str]) -> (Vec<u8>, Pushes, Pushes) {
    c.send_cmd(args);
    let mut before = Vec::new();
    let reply = loop {
        let f = c.read_frame().unwrap();
        if f.first() != Some(&b'>') {
            break f;
        }
        before.push(invalidated(&f));
    };
    let rest = c.take_buffered();
    let mut with_reply = Vec::new();
    let mut at = 0;
    while let Some((_, n)) = Frame::parse(&rest[at..]).unwrap() {
        with_reply.push(invalidated(&rest[at..at + n]));
        at += n;
    }
    assert_eq!(at, rest.len(), "a frame cut in two in one read");
    (reply, before, with_reply)
}

#[test]
fn bcast_reports_every_key_of_its_prefixes() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "");
    let mut b = tracking(&s, &["BCAST", "PREFIX", "user:", "PREFIX", "obj:"]);
    let info = b.call_raw(&["CLIENT", "TRACKINGINFO"]);
    assert_eq!(
        info,
        b"%3\r\n$5\r\nflags\r\n~2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*2\r\n$4\r\nobj:\r\n$5\r\nuser:\r\n"
            .to_vec()
    );
    // Never read, still reported: a write on a node directly and one through strata.
    let owner = s.owner("user:1");
    RawClient::connect(&nodes[owner].addr()).call(&["SET", "user:1", "x"]);
    expect_invalidation(&mut b, "user:1", "a direct write of a prefix's key");
    s.raw().call(&["SET", "obj:9", "y"]);
    expect_invalidation(&mut b, "obj:9", "a write through strata of a prefix's key");
    s.raw().call(&["SET", "other", "z"]);
    expect_quiet(&mut b, "other", "a write of a key of no prefix");
    let mut probe = s.raw();
    assert_eq!(stat(&mut probe, "tracking_total_prefixes"), 2);
}

#[test]
fn resp2_clients_redirect_to_a_subscriber() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "");
    let mut sub = s.raw();
    let id = sub.call(&["CLIENT", "ID"]).int();
    sub.call(&["SUBSCRIBE", "__redis__:invalidate"]);
    let mut t = s.raw();
    assert_eq!(
        t.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id.to_string()]),
        common::Resp::ok()
    );
    assert_eq!(t.call(&["CLIENT", "GETREDIR"]).int(), id);
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams to report every key", || {
        (stat(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    t.call(&["GET", "r"]);
    s.raw().call(&["SET", "r", "1"]);
    let expected =
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nr\r\n".to_vec();
    let got = poll_until(DEADLINE, "the redirected message", || {
        frames_within(&mut sub, Duration::from_millis(200))
            .into_iter()
            .find(|f| *f == expected)
    });
    assert_eq!(got, expected);
    // A flush reaches it as a message with a null.
    s.raw().call(&["FLUSHALL"]);
    let flush = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n".to_vec();
    poll_until(DEADLINE, "the redirected flush", || {
        frames_within(&mut sub, Duration::from_millis(200))
            .into_iter()
            .find(|f| *f == flush)
    });
    // The subscriber gone, the redirect is broken.
    drop(sub);
    t.call(&["GET", "r"]);
    s.raw().call(&["SET", "r", "2"]);
    poll_until(DEADLINE, "the broken redirect", || {
        let info = t.call(&["CLIENT", "TRACKINGINFO"]);
        let flags = info.array()[1].clone();
        flags
            .array()
            .iter()
            .any(|f| f.text() == "broken_redirect")
            .then_some(())
    });
    let list = t.call(&["CLIENT", "INFO"]).text();
    assert!(
        list.contains("flags=tR") && list.contains(&format!("redir={id}")),
        "{list}"
    );
}

#[test]
fn flushes_and_a_lost_stream_tell_every_tracking_client() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "");
    let mut c = tracking(&s, &[]);
    c.call_raw(&["GET", "f"]);
    // FLUSHALL through strata.
    s.raw().call(&["FLUSHALL"]);
    poll_until(DEADLINE, "the flush", || {
        frames_within(&mut c, Duration::from_millis(200))
            .iter()
            .any(|f| invalidated(f).is_none())
            .then_some(())
    });
    // FLUSHALL on one node directly.
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams back", || {
        (stat(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    RawClient::connect(&nodes[1].addr()).call(&["FLUSHALL"]);
    poll_until(DEADLINE, "the node's flush", || {
        frames_within(&mut c, Duration::from_millis(200))
            .iter()
            .any(|f| invalidated(f).is_none())
            .then_some(())
    });
    // strata's stream of a node killed: what the client cached may change unreported.
    let flushes = stat(&mut probe, "strata_tracking_flushes");
    let killed = RawClient::connect(&nodes[2].addr())
        .call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert!(killed.int() >= 1);
    poll_until(DEADLINE, "the lost stream's flush", || {
        frames_within(&mut c, Duration::from_millis(200))
            .iter()
            .any(|f| invalidated(f).is_none())
            .then_some(())
    });
    assert!(stat(&mut probe, "strata_tracking_flushes") > flushes);
    // Back, the client is told of keys again.
    poll_until(DEADLINE, "the streams back", || {
        (stat(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    frames_within(&mut c, Duration::from_millis(100));
    c.call_raw(&["GET", "f"]);
    s.raw().call(&["SET", "f", "1"]);
    expect_invalidation(&mut c, "f", "a write after the stream came back");
}

#[test]
fn commands_reply_as_redis_and_the_table_is_bounded() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes, "client_tracking: { max_keys: 5 }\n");
    let mut c = s.raw();
    let err = |c: &mut RawClient, args: &[&str]| c.call(args).error_text();
    assert_eq!(
        err(&mut c, &["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"]),
        "ERR You can't specify both OPTIN mode and OPTOUT mode"
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "TRACKING", "on", "PREFIX", "a"]),
        "ERR PREFIX option requires BCAST mode to be enabled"
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "TRACKING", "on", "REDIRECT", "99999"]),
        "ERR The client ID you want redirect to does not exist"
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "CACHING", "yes"]),
        "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"
    );
    assert_eq!(c.call(&["CLIENT", "GETREDIR"]).int(), -1);
    assert_eq!(
        c.call(&["CLIENT", "TRACKING", "on", "OPTIN"]),
        common::Resp::ok()
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "TRACKING", "on", "OPTOUT"]),
        "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "CACHING", "no"]),
        "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
    );
    assert_eq!(c.call(&["CLIENT", "GETREDIR"]).int(), 0);
    assert_eq!(c.call(&["RESET"]), common::Resp::status("RESET"));
    assert_eq!(c.call(&["CLIENT", "GETREDIR"]).int(), -1);

    // Past max_keys, keys are invalidated early (their readers told).
    let mut t = tracking(&s, &[]);
    for i in 0..8 {
        t.send_cmd(&["GET", &format!("b{i}")]);
    }
    // The replies (nulls) and, among them, the invalidations of the keys that made room.
    let frames = frames_within(&mut t, Duration::from_millis(500));
    let (nulls, pushes): (Vec<_>, Vec<_>) = frames.iter().partition(|f| f.as_slice() == b"_\r\n");
    assert_eq!(nulls.len(), 8);
    let told: usize = pushes
        .iter()
        .filter_map(|f| invalidated(f))
        .map(|k| k.len())
        .sum();
    assert_eq!(told, 3);
    let mut probe = s.raw();
    assert_eq!(stat(&mut probe, "tracking_total_keys"), 5);
    assert_eq!(stat(&mut probe, "strata_tracking_evicted_keys"), 3);
    drop(t);
    poll_until(DEADLINE, "the client gone", || {
        (stat(&mut probe, "tracking_clients") == 0).then_some(())
    });
}
