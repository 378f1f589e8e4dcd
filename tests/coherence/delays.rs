//! The timed and provoked parts of the coherence file: the invalidation delay of the near
//! cache (a write on a node → the entry gone from strata) and of client tracking (a write →
//! the push at a tracking client), and the fill race of client tracking (a read a write
//! overtook must be told).

use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::common::layers::stats_field;
use super::common::resp3::Frame;
use super::common::{encode_cmd, poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};
use super::csc::{self, Incoming};
use super::faults::{fields, wait_settled};
use super::history::percentiles;
use super::report::{ms, spread};
use super::{env_u64, LAYERS};

/// A write made on a node directly → the entry gone from strata: for each write, the key is
/// made cached, written on its node, and `STRATA NEARCACHE GET` polled until it is gone. The
/// delay printed is from the write's reply to the reply of the first poll that saw the entry
/// gone (an upper bound, by one poll's round trip). Figures only: nothing timed is asserted,
/// but each entry must go (within [`DEADLINE`]).
#[test]
fn invalidation_delay_of_a_write_made_on_a_node() {
    let writes = env_u64("STRATA_INVALIDATION_WRITES", 200) as usize;
    let nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    // One key on each node, written in turn.
    let keys: Vec<String> = (0..nodes.len())
        .map(|n| s.key_on(n, "meta:delay", &[]))
        .collect();
    let mut direct: Vec<RawClient> = nodes
        .iter()
        .map(|n| RawClient::connect(&n.addr()))
        .collect();
    let mut c = s.raw();
    wait_settled(&mut c, &keys[0]);
    let cached = |c: &mut RawClient, key: &str| {
        fields(&c.call(&["STRATA", "NEARCACHE", "GET", key]))["cached"] == Resp::Int(1)
    };
    let mut delays = Vec::with_capacity(writes);
    let mut round_trips = Vec::new();
    // Writes whose entry was already gone at the first poll: the delay is below one poll's
    // round trip, the resolution of this measurement.
    let mut first_poll = 0;
    // Reads right after a write that still returned the key's previous value: its
    // invalidation was still on its way, as it may be (the bound).
    let mut previous_read = 0;
    for i in 0..writes {
        let n = i % nodes.len();
        let key = keys[n].as_str();
        let old = format!("v{i}");
        let previous = (i >= nodes.len()).then(|| format!("v{}'", i - nodes.len()));
        assert_eq!(direct[n].call(&["SET", key, &old]), Resp::ok());
        poll_until(DEADLINE, "the key to be cached", || {
            let got = c.call(&["GET", key]);
            if got != Resp::bulk(&old) {
                assert_eq!(Some(got), previous.as_ref().map(Resp::bulk), "GET {key}");
                previous_read += 1;
                return None;
            }
            cached(&mut c, key).then_some(())
        });
        let new = format!("v{i}'");
        assert_eq!(direct[n].call(&["SET", key, &new]), Resp::ok());
        let ack = Instant::now();
        let end = ack + DEADLINE;
        for poll in 0.. {
            let sent = Instant::now();
            let gone = !cached(&mut c, key);
            let seen = Instant::now();
            round_trips.push(seen - sent);
            if gone {
                delays.push(seen - ack);
                first_poll += usize::from(poll == 0);
                break;
            }
            assert!(
                seen < end,
                "the entry of {key} was not invalidated in {DEADLINE:?}"
            );
        }
        assert_eq!(c.call(&["GET", key]), Resp::bulk(&new));
    }
    let (p50, p99, max) = percentiles(&mut delays);
    let (rt50, _, _) = percentiles(&mut round_trips);
    println!(
        "invalidation delay over {writes} direct writes (write acknowledged → entry gone, at most): p50 {} p99 {} max {}; poll round trip p50 {}; gone at the first poll: {first_poll}; reads of the previous value right after a write: {previous_read}",
        ms(p50),
        ms(p99),
        ms(max),
        ms(rt50)
    );
}

/// A client's frames, read by a thread of their own: each with when it came.
struct Frames {
    rx: mpsc::Receiver<Result<(Instant, Vec<u8>), String>>,
    thread: thread::JoinHandle<()>,
}

impl Frames {
    /// Starts reading `client`'s frames; requests go out on the handle returned. The reads
    /// wait longer than anything waits for a frame: a frame not come is the waiter's failure,
    /// named by it.
    fn start(client: RawClient) -> (Frames, std::net::TcpStream) {
        client.set_read_timeout(2 * DEADLINE);
        let requests = client.try_clone_stream();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut client = client;
            loop {
                let frame = client.read_frame().map(|f| (Instant::now(), f));
                let failed = frame.is_err();
                if tx.send(frame).is_err() || failed {
                    break;
                }
            }
        });
        (Frames { rx, thread }, requests)
    }

    /// The next frame before `until`; `None` past it.
    fn next(&self, until: Instant) -> Option<(Instant, Incoming)> {
        let left = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Ok((at, bytes))) => Some((at, csc::incoming(&bytes))),
            Ok(Err(e)) => panic!("a tracking connection failed: {e}"),
            Err(_) => None,
        }
    }

    /// Whether a push naming `key` has come (and every frame that has come, taken).
    fn told_of(&self, key: &str) -> bool {
        self.rx
            .try_iter()
            .map(|f| f.map(|(_, b)| csc::incoming(&b)))
            .fold(false, |told, f| match f {
                Ok(Incoming::Invalidate(ks)) => told || ks.iter().any(|k| k == key.as_bytes()),
                Ok(_) => told,
                Err(e) => panic!("a tracking connection failed: {e}"),
            })
    }
}

/// Keys per node the client-tracking delay test cycles through: a key is read again only after
/// the others were, by then long done with the reports of its last write (strata's own and
/// its node's stream's: the first one to come is sent, the other finds the key no longer read).
const DELAY_KEYS_PER_NODE: usize = 8;

/// A write → the `invalidate` push reaching a tracking client (RESP3, `CLIENT TRACKING on`),
/// for writes made on a node directly and writes through strata by another client, in turn:
/// for each, the tracking client GETs the key (so strata notes that it read it), the key is
/// written, and a thread reading the client's connection notes when the push naming it came.
/// The delay is from the write's reply, 0 when the push came first (a write through strata
/// tells tracking clients before its writer has the reply; a node tells strata's stream
/// before its writer has the reply), and also from the write's request being sent. Figures
/// only: nothing timed is asserted, but each push must come (within [`DEADLINE`]).
#[test]
fn invalidation_delay_of_client_tracking() {
    let writes = env_u64("STRATA_INVALIDATION_WRITES", 200) as usize;
    let nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    let mut keys: Vec<(String, usize)> = Vec::new();
    for n in 0..nodes.len() {
        for _ in 0..DELAY_KEYS_PER_NODE {
            let taken: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
            keys.push((s.key_on(n, "meta:csc", &taken), n));
        }
    }
    let tracking =
        csc::connect(&s.addr().to_string(), csc::Mode::Default).expect("a tracking connection");
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams to report every key", || {
        (stats_field(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    // Requests go out on a second handle of the socket; a thread reads every frame.
    let (frames, mut requests) = Frames::start(tracking);
    let next = |until: Instant, what: &str| -> (Instant, Incoming) {
        frames
            .next(until)
            .unwrap_or_else(|| panic!("no {what} in {DEADLINE:?}"))
    };
    let mut strata = s.raw();
    let mut direct: Vec<RawClient> = nodes
        .iter()
        .map(|n| RawClient::connect(&n.addr()))
        .collect();
    // By kind (0: on the node, 1: through strata): from the acknowledgement, from the
    // request sent, and how many pushes came before the acknowledgement.
    let mut from_ack: [Vec<Duration>; 2] = Default::default();
    let mut from_sent: [Vec<Duration>; 2] = Default::default();
    let mut early = [0usize; 2];
    for i in 0..2 * writes {
        let via_strata = i % 2;
        let (key, node) = &keys[(i / 2) % keys.len()];
        // The key read, and no push naming it come since (a late report of an earlier write
        // would leave the next one untold): read again if one did.
        for attempt in 0.. {
            assert!(
                attempt < 10,
                "{key} was invalidated right after each of 10 reads"
            );
            requests.write_all(&encode_cmd(&["GET", key])).unwrap();
            let until = Instant::now() + DEADLINE;
            while !matches!(next(until, "GET's reply").1, Incoming::Reply(_)) {}
            if !frames.told_of(key) {
                break;
            }
        }
        let value = format!("v{i}");
        let sent = Instant::now();
        let reply = if via_strata == 1 {
            strata.call(&["SET", key, &value])
        } else {
            direct[*node].call(&["SET", key, &value])
        };
        let ack = Instant::now();
        assert_eq!(reply, Resp::ok());
        let until = sent + DEADLINE;
        let at = loop {
            match next(until, &format!("invalidation of {key}")) {
                (at, Incoming::Invalidate(ks)) if ks.iter().any(|k| k == key.as_bytes()) => {
                    break at
                }
                (_, Incoming::Invalidate(_)) => {}
                (_, other) => panic!("waiting for the invalidation of {key}: {other:?}"),
            }
        };
        from_ack[via_strata].push(at.saturating_duration_since(ack));
        from_sent[via_strata].push(at - sent);
        early[via_strata] += usize::from(at < ack);
    }
    requests.shutdown(Shutdown::Both).unwrap();
    frames.thread.join().expect("the frames' reader failed");
    for (kind, what) in ["made on a node directly", "through strata"]
        .iter()
        .enumerate()
    {
        println!(
            "client tracking: invalidation delay over {writes} writes {what} (write acknowledged → push received): {}; {} pushes came before the acknowledgement; from the write sent: {}",
            spread(&mut from_ack[kind]),
            early[kind],
            spread(&mut from_sent[kind])
        );
    }
}

/// Writes per round of the fill-race test: enough for reads to be sent while they go on.
const RACE_WRITES: usize = 20;

/// The fill race of client tracking (docs/client-tracking.md, "No stale value is kept
/// unreported"): a read's reply comes from a node on strata's data connection and the
/// invalidation of a write that overtook it on the node's stream, and strata may take the
/// invalidation first, before it knows the client read the key. Each round, a writer writes a
/// key [`RACE_WRITES`] times in a row (on its node directly, or through strata) while a client
/// with tracking on (default mode, or BCAST) keeps a cache of it: GET whenever it holds no
/// value, drop it on a push naming it. Once the writes are over, the value it holds must be
/// the last one written, or a push must come to drop it (within [`DEADLINE`]: an untold value
/// would be kept for ever). The coherence run meets this race too rarely to be sure of it.
#[test]
fn a_tracked_read_that_a_write_overtook_is_told() {
    let rounds = env_u64("STRATA_RACE_ROUNDS", 200) as usize;
    let nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    // A key of its own for each round (a push of an earlier round's writes cannot stand in
    // for the one a round waits for), on node 0: in turns of four rounds, of a layer without
    // a near cache and of a near-cached one.
    let mut keys: Vec<String> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let prefix = ["plain:race", "meta:race"][(round / 4) % 2];
        keys.push(s.key_on(0, prefix, &keys));
    }
    let clients: Vec<(Frames, std::net::TcpStream)> = [csc::Mode::Default, csc::Mode::Bcast]
        .iter()
        .map(|&mode| {
            Frames::start(csc::connect(&s.addr().to_string(), mode).expect("a tracking connection"))
        })
        .collect();
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams to report every key", || {
        (stats_field(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    // The writer: a round's writes on request, the last value written back.
    let (to_writer, orders) = mpsc::channel::<(String, bool, usize)>();
    // Each write's value and when its reply came, the last one last.
    let (written, from_writer) = mpsc::channel::<Vec<(String, Instant)>>();
    let (strata_addr, node_addr) = (s.addr().to_string(), nodes[0].addr());
    let writer = thread::spawn(move || {
        let mut strata = RawClient::connect(&strata_addr);
        let mut direct = RawClient::connect(&node_addr);
        for (key, via_strata, round) in orders {
            let mut acks = Vec::with_capacity(RACE_WRITES);
            for i in 0..RACE_WRITES {
                let value = format!("v{}", round * RACE_WRITES + i);
                let c = if via_strata { &mut strata } else { &mut direct };
                assert_eq!(c.call(&["SET", &key, &value]), Resp::ok());
                acks.push((value, Instant::now()));
            }
            written.send(acks).unwrap();
        }
    });
    // Rounds that ended with an older value held (a push still to come), and how long after
    // the last write's reply that push came.
    let mut held_older = 0;
    let mut told_after = Vec::new();
    let mut gets = 0;
    for round in 0..rounds {
        let (frames, requests) = &clients[round % 2];
        let mode = if round % 2 == 0 { "default" } else { "BCAST" };
        let via_strata = (round / 2) % 2 == 1;
        let key = &keys[round];
        to_writer.send((key.clone(), via_strata, round)).unwrap();
        // The value held, `Some(None)` for a nil (cached as well).
        let mut held: Option<Option<Vec<u8>>> = None;
        let mut in_flight = false;
        let mut last: Option<Vec<(String, Instant)>> = None;
        // What the client did and saw this round, for the failure's message.
        let began = Instant::now();
        let mut seen: Vec<(Instant, String)> = Vec::new();
        let until = began + DEADLINE;
        loop {
            if last.is_none() {
                last = from_writer.try_recv().ok();
            }
            if !in_flight && held.is_none() {
                if last.is_some() {
                    break;
                }
                let mut out = requests;
                out.write_all(&encode_cmd(&["GET", key])).unwrap();
                seen.push((Instant::now(), "GET sent".to_string()));
                in_flight = true;
                gets += 1;
            }
            if !in_flight && last.is_some() {
                break;
            }
            // Short waits while the writes go on: the writer's reply is polled between them.
            let wait = Instant::now() + Duration::from_millis(1);
            match frames.next(wait.min(until)) {
                Some((at, Incoming::Invalidate(ks))) => {
                    if ks.iter().any(|k| k == key.as_bytes()) {
                        held = None;
                        seen.push((at, format!("push naming it ({} keys)", ks.len())));
                    }
                }
                Some((at, Incoming::Flush)) => {
                    held = None;
                    seen.push((at, "flush".to_string()));
                }
                Some((at, Incoming::Reply(reply))) => {
                    in_flight = false;
                    held = match reply {
                        Frame::Blob(b'$', Some(v)) => Some(Some(v)),
                        Frame::Line(b'_', _) => Some(None),
                        other => panic!("GET {key} answered {other:?}"),
                    };
                    let shown = held
                        .clone()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                    seen.push((at, format!("reply {shown:?}")));
                }
                None => assert!(
                    Instant::now() < until,
                    "round {round} took over {DEADLINE:?}"
                ),
            }
        }
        let acks = last.unwrap();
        let (last, acked) = acks.last().cloned().unwrap();
        let Some(value) = held
            .take()
            .filter(|v| v.as_deref() != Some(last.as_bytes()))
        else {
            continue;
        };
        // An older value held: a push naming the key must come.
        held_older += 1;
        let until = Instant::now() + DEADLINE;
        let at = loop {
            match frames.next(until) {
                Some((at, Incoming::Invalidate(ks))) if ks.iter().any(|k| k == key.as_bytes()) => {
                    break at
                }
                Some((at, Incoming::Flush)) => break at,
                Some(_) => {}
                None => {
                    let mut events: Vec<(Instant, String)> = acks
                        .iter()
                        .map(|(v, at)| (*at, format!("{v} written")))
                        .chain(seen.iter().cloned())
                        .collect();
                    events.sort_by_key(|(at, _)| *at);
                    let timeline: Vec<String> = events
                        .iter()
                        .map(|(at, what)| {
                            format!("{} {what}", ms(at.saturating_duration_since(began)))
                        })
                        .collect();
                    panic!(
                        "round {round} ({mode} mode, writes {}): {key} holds {:?} though {last} was written, and no push came in {DEADLINE:?}; the round:\n  {}",
                        if via_strata { "through strata" } else { "on the node" },
                        value.as_deref().map(String::from_utf8_lossy),
                        timeline.join("\n  ")
                    )
                }
            }
        };
        told_after.push(at.saturating_duration_since(acked));
    }
    drop(to_writer);
    writer.join().expect("the writer failed");
    for (frames, requests) in clients {
        requests.shutdown(Shutdown::Both).unwrap();
        frames.thread.join().expect("a frames' reader failed");
    }
    println!(
        "fill race: {rounds} rounds of {RACE_WRITES} writes, {gets} GETs; {held_older} rounds ended holding an older value, each told after the last write's reply: {}",
        spread(&mut told_after)
    );
}
