//! The coherence checker's client-side caches: readers that each keep a cache of their own
//! through strata's `CLIENT TRACKING`, as a client library does (redis-py, node-redis). One
//! RESP3 connection with tracking on, and a map key → value. A read first takes every frame
//! that has arrived on the connection, in order (an `invalidate` push drops the keys it names,
//! a null one everything), then serves the value from the map when it is there, else sends GET
//! and keeps its reply. Frames are taken in the order strata wrote them, as those libraries
//! take them: a push that came before the GET's reply finds nothing to drop, one that came
//! after it drops the value just kept.
//!
//! The readers take turns over the modes ([`Mode`]): the default one (strata remembers the
//! keys each read), BCAST (told of every key written) and OPTIN (each GET after
//! `CLIENT CACHING yes`, as a library caching only some reads does).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::common::resp3::Frame;
use super::common::RawClient;
use super::history::{parse_value, Read, Seen, Value};
use super::workload::{Rng, Run};

/// One frame from strata on a tracking connection.
#[derive(Debug)]
pub enum Incoming {
    /// `>2 invalidate [keys]`: these keys changed.
    Invalidate(Vec<Vec<u8>>),
    /// `>2 invalidate _`: anything may have changed.
    Flush,
    /// The reply to a request.
    Reply(Frame),
}

/// What the bytes of one frame are; panics on a push other than `invalidate` (the readers
/// ask for nothing else) or on bytes that are no frame.
pub fn incoming(bytes: &[u8]) -> Incoming {
    let frame = Frame::parse_all(bytes)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(bytes)));
    let Frame::Aggregate(b'>', Some(items)) = &frame else {
        return Incoming::Reply(frame);
    };
    assert_eq!(
        items.first().and_then(Frame::text),
        Some(&b"invalidate"[..]),
        "unexpected push {frame:?}"
    );
    match items.get(1) {
        Some(Frame::Line(b'_', _)) => Incoming::Flush,
        Some(Frame::Aggregate(b'*', Some(keys))) => Incoming::Invalidate(
            keys.iter()
                .map(|k| k.text().expect("a key").to_vec())
                .collect(),
        ),
        _ => panic!("unexpected invalidate push {frame:?}"),
    }
}

/// How a client-side cache's connection tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `CLIENT TRACKING on`: told of the keys it read.
    Default,
    /// `CLIENT TRACKING on BCAST` (no prefix): told of every key written.
    Bcast,
    /// `CLIENT TRACKING on OPTIN`: told of the keys read right after `CLIENT CACHING yes`,
    /// which it sends before each GET.
    Optin,
}

impl Mode {
    /// Client-side cache `slot`'s mode: they take turns.
    pub fn of(slot: usize) -> Mode {
        [Mode::Default, Mode::Bcast, Mode::Optin][slot % 3]
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Bcast => "BCAST",
            Mode::Optin => "OPTIN",
        }
    }

    fn tracking(self) -> &'static [&'static str] {
        match self {
            Mode::Default => &["CLIENT", "TRACKING", "on"],
            Mode::Bcast => &["CLIENT", "TRACKING", "on", "BCAST"],
            Mode::Optin => &["CLIENT", "TRACKING", "on", "OPTIN"],
        }
    }
}

/// A RESP3 connection to strata with `CLIENT TRACKING on` in `mode`; `None` when strata
/// cannot be reached or refuses.
pub fn connect(addr: &str, mode: Mode) -> Option<RawClient> {
    let mut c = RawClient::try_connect(addr).ok()?;
    let mut call = |args: &[&str]| {
        if !c.try_send_cmd(args) {
            return None;
        }
        c.read_frame().ok()
    };
    let hello = call(&["HELLO", "3"])?;
    if !hello.starts_with(b"%") {
        return None;
    }
    (call(mode.tracking())? == b"+OK\r\n").then_some(c)
}

/// What a reader's cache did over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Keys named by `invalidate` pushes.
    pub keys_named: u64,
    /// Values dropped from the map by them.
    pub dropped: u64,
    /// Null pushes (everything dropped).
    pub flushes: u64,
    /// Connections lost (the map is emptied then, as a library empties its cache).
    pub reconnects: u64,
}

/// A reader's cache: the values it keeps, by key index.
struct Cache<'r> {
    run: &'r Run,
    /// Which of the run's client-side caches this is (`Run::flushes`).
    slot: usize,
    mode: Mode,
    values: HashMap<usize, Value>,
    /// Key name → index, for the names pushes carry.
    index: HashMap<&'r [u8], usize>,
    counts: Counts,
}

impl Cache<'_> {
    /// Takes one frame: a push is applied, a reply returned.
    fn take(&mut self, bytes: &[u8]) -> Option<Frame> {
        match incoming(bytes) {
            Incoming::Invalidate(keys) => {
                self.counts.keys_named += keys.len() as u64;
                for key in keys {
                    let k = self.index.get(key.as_slice());
                    if k.and_then(|k| self.values.remove(k)).is_some() {
                        self.counts.dropped += 1;
                    }
                }
                None
            }
            Incoming::Flush => {
                self.values.clear();
                self.counts.flushes += 1;
                self.run.flushes[self.slot]
                    .lock()
                    .unwrap()
                    .push(Instant::now());
                None
            }
            Incoming::Reply(frame) => Some(frame),
        }
    }

    /// Reads `key`: the pushes that have arrived first, then the map, else a GET whose reply
    /// is kept. Whether it was served from the map, and what was seen; `Err` when the
    /// connection failed (the map is then emptied).
    fn read(&mut self, conn: &mut RawClient, key: usize) -> Result<(Seen, bool), String> {
        while let Some(bytes) = conn.read_frame_now()? {
            if let Some(reply) = self.take(&bytes) {
                panic!("a reply no request waited for: {reply:?}");
            }
        }
        if let Some(value) = self.values.get(&key) {
            return Ok((Seen::Value(*value), true));
        }
        let name = self.run.keys.names[key].as_str();
        if self.mode == Mode::Optin {
            // Pipelined with the GET, as a library sends them.
            if !conn.try_send_cmd(&["CLIENT", "CACHING", "yes"]) {
                return Err("sending CLIENT CACHING failed".to_string());
            }
        }
        if !conn.try_send_cmd(&["GET", name]) {
            return Err("sending GET failed".to_string());
        }
        if self.mode == Mode::Optin {
            let ok = self.reply(conn)?;
            if ok != Frame::Line(b'+', b"OK".to_vec()) {
                return Err(format!("CLIENT CACHING yes answered {ok:?}"));
            }
        }
        let reply = self.reply(conn)?;
        let seen = seen(&reply);
        if let Seen::Value(value) = seen {
            self.values.insert(key, value);
        }
        Ok((seen, false))
    }

    /// The next reply on `conn`, taking the pushes before it.
    fn reply(&mut self, conn: &mut RawClient) -> Result<Frame, String> {
        loop {
            if let Some(reply) = self.take(&conn.read_frame()?) {
                return Ok(reply);
            }
        }
    }
}

/// What a GET's RESP3 reply says the key holds.
fn seen(reply: &Frame) -> Seen {
    match reply {
        Frame::Line(b'_', _) => Seen::Value(None),
        Frame::Blob(b'$', Some(b)) => match parse_value(b) {
            Some(n) => Seen::Value(Some(n)),
            None => Seen::Garbage(String::from_utf8_lossy(b).into_owned()),
        },
        Frame::Line(b'-', e) | Frame::Blob(b'!', Some(e)) => {
            Seen::Error(String::from_utf8_lossy(e).into_owned())
        }
        other => Seen::Garbage(format!("{other:?}")),
    }
}

/// Reads random keys through client-side cache `slot` (reader `id` in the reads; tracking in
/// [`Mode::of`] `slot`) on `conn` until told to stop, pausing `Run::csc_pause` between reads (an application does other
/// work between them; without it a cache hit takes microseconds and the reads would swamp
/// the judgement).
pub fn reader(
    run: &Run,
    id: usize,
    slot: usize,
    conn: RawClient,
    seed: u64,
) -> (Vec<Read>, Counts) {
    let mut rng = Rng(seed);
    let mode = Mode::of(slot);
    let mut cache = Cache {
        run,
        slot,
        mode,
        values: HashMap::new(),
        index: (run.keys.names.iter().enumerate())
            .map(|(k, name)| (name.as_bytes(), k))
            .collect(),
        counts: Counts::default(),
    };
    let mut conn = Some(conn);
    let mut reads = Vec::new();
    while !run.stop.load(Ordering::Relaxed) {
        let key = rng.below(run.keys.names.len());
        let start = Instant::now();
        let outcome = match conn.as_mut() {
            Some(c) => cache.read(c, key),
            None => Err("connection failed".to_string()),
        };
        let end = Instant::now();
        let (seen, local) = outcome.unwrap_or_else(|e| {
            // As a library does: a new connection, tracking on again, the cache emptied.
            cache.values.clear();
            cache.counts.reconnects += 1;
            conn = connect(&run.strata, mode);
            (Seen::Error(e), false)
        });
        reads.push(Read {
            reader: id,
            key,
            start,
            end,
            seen,
            local,
        });
        std::thread::sleep(run.csc_pause);
    }
    (reads, cache.counts)
}
