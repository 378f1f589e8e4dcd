//! What each request's reply adds to the statistics: per-command calls and time, and per layer
//! hits, misses, writes, deletes, TTLs applied, errors and latency by command class.
//!
//! Dispatch fills a [`Track`] beside each pending reply; when the session writes the reply it
//! hands both to a [`Recorder`], which reads the reply (nil or empty = miss) and counts into the
//! worker's own counters.

use std::sync::{MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::command::spec::{flags, CommandSpec, KeySpec};
use crate::command::table::COMMANDS;
use crate::policy::{LayerId, Layers};
use crate::protocol::Reply;
use crate::stats::{Class, Latency, LayerWorker, WorkerStats};

/// How a command's reply is counted in its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not counted (keyless commands, admin).
    Skip,
    /// A read: nil or an empty array is a miss, anything else a hit.
    Read,
    /// A read answering a count or a 0/1 test (STRLEN, SCARD, SISMEMBER, ...): 0 is a miss.
    Count,
    /// EXISTS: the reply counts the keys found; the others are misses.
    Exists,
    /// TTL / PTTL / EXPIRETIME / PEXPIRETIME: -2 (no such key) is a miss.
    Ttl,
    /// TYPE: `none` is a miss.
    Type,
    /// MGET: one hit or miss per key.
    Mget,
    /// GETDEL: a read, and a delete when it found the key.
    GetDel,
    /// A write: one per key written (MSET counts its pairs).
    Write,
    /// DEL / UNLINK: one delete per key named.
    Delete,
    /// STRATA WARM: one warm operation.
    Warm,
}

/// What strata knows in advance about a command, for counting and for the TTL policy.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    pub outcome: Outcome,
    pub class: Class,
    /// The TTL policy may rewrite it (see `policy::ttl`).
    pub ttl_rule: bool,
    /// It has subcommands (CLIENT LIST shows `name|subcommand`).
    pub subcommands: bool,
}

const NO_TRAITS: Traits = Traits {
    outcome: Outcome::Skip,
    class: Class::Other,
    ttl_rule: false,
    subcommands: false,
};

fn traits_of(spec: &CommandSpec) -> Traits {
    let class = if spec.has(flags::WRITE) {
        Class::Write
    } else if spec.has(flags::READONLY) {
        Class::Read
    } else {
        Class::Other
    };
    let has_keys = spec.keys != KeySpec::None;
    let outcome = match spec.name {
        "mget" => Outcome::Mget,
        "exists" => Outcome::Exists,
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => Outcome::Ttl,
        "type" => Outcome::Type,
        "getdel" => Outcome::GetDel,
        "getex" => Outcome::Read,
        "del" | "unlink" => Outcome::Delete,
        "strlen" | "hlen" | "llen" | "scard" | "zcard" | "xlen" | "sismember" | "hexists"
        | "hstrlen" | "bitcount" | "zcount" | "zlexcount" | "pfcount" | "getbit" | "sintercard" => {
            Outcome::Count
        }
        _ if !has_keys => Outcome::Skip,
        _ if class == Class::Write => Outcome::Write,
        _ if class == Class::Read => Outcome::Read,
        _ => Outcome::Skip,
    };
    Traits {
        outcome,
        class,
        subcommands: crate::command::spec::has_subcommands(spec.name),
        // Not tied to the WRITE flag: XGROUP (no flags of its own) creates a stream with
        // MKSTREAM.
        ttl_rule: crate::policy::ttl::has_rule(spec.name),
    }
}

/// The traits of command-table entry `index`.
pub fn traits(index: Option<usize>) -> Traits {
    static TABLE: OnceLock<Vec<Traits>> = OnceLock::new();
    let table = TABLE.get_or_init(|| COMMANDS.iter().map(traits_of).collect());
    index
        .and_then(|i| table.get(i))
        .copied()
        .unwrap_or(NO_TRAITS)
}

/// What is known about one request until its reply is written.
#[derive(Debug)]
pub struct Track {
    /// When strata read the request (one clock read per batch of requests).
    pub started: Instant,
    /// Command-table index.
    pub command: Option<u16>,
    pub class: Class,
    pub outcome: Outcome,
    /// The layer of the request's first key; None for keyless requests.
    pub layer: Option<LayerId>,
    /// Every key's layer, when a multi-key request spans several layers.
    pub key_layers: Option<Box<[LayerId]>>,
    /// Keys written or deleted (MSET's pairs, DEL's keys); 1 for single-key commands.
    pub keys: u32,
    /// TTLs the policy added or clamped by rewriting the request.
    pub rewrites: u32,
    /// The protocol the reply is written in: the client's when the request was read (HELLO
    /// answers in the protocol it switches to).
    pub proto: crate::protocol::Proto,
    /// The RESP3 type of a reply strata builds itself, for clients that speak RESP3 (node
    /// replies come from RESP3 connections and are written as they are).
    pub shape: crate::protocol::resp3::Shape,
    /// Refused before it ran (arity, disabled): counted as the command's `rejected_calls`,
    /// not as a call.
    pub rejected: bool,
    /// A write of near-cached (or coalescing) keys: what to invalidate again once its reply
    /// is in, before the client gets it (`plan/near.rs`); `None` for every other request.
    /// Boxed: every request's track is moved several times, and most carry none.
    pub near_after: Option<Box<crate::coordinator::plan::WriteEffect>>,
    /// A read by a client with `CLIENT TRACKING` on (`tracked.rs`), finished when its reply
    /// is in; `None` for every other request.
    pub tracked: Option<Box<crate::coordinator::tracked::TrackedRead>>,
}

impl Track {
    pub fn new(started: Instant) -> Track {
        Track {
            started,
            command: None,
            class: Class::Other,
            outcome: Outcome::Skip,
            layer: None,
            key_layers: None,
            keys: 1,
            rewrites: 0,
            proto: crate::protocol::Proto::Resp2,
            shape: crate::protocol::resp3::Shape::Plain,
            rejected: false,
            near_after: None,
            tracked: None,
        }
    }

    /// A track for a reply in `proto`.
    pub fn in_proto(started: Instant, proto: crate::protocol::Proto) -> Track {
        let mut track = Track::new(started);
        track.proto = proto;
        track
    }

    /// Records the layers of a multi-key request's keys (`stride` 2 for key/value pairs).
    pub fn set_keys(&mut self, layers: &Layers, args: &[Bytes], stride: usize) {
        let keys: Vec<LayerId> = args
            .iter()
            .skip(1)
            .step_by(stride.max(1))
            .map(|k| layers.resolve(k))
            .collect();
        self.keys = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        self.layer = keys.first().copied();
        if keys.iter().any(|l| Some(*l) != self.layer) {
            self.key_layers = Some(keys.into_boxed_slice());
        }
    }
}

/// Counts replies into one worker's statistics. Made for one batch of replies: it reads the
/// clock once, and keeps the last latency histogram locked while consecutive replies share it.
pub struct Recorder<'a> {
    worker: usize,
    stats: Option<&'a WorkerStats>,
    layers: &'a Layers,
    now: Instant,
    held: Option<(Option<LayerId>, Class, MutexGuard<'a, Latency>)>,
}

impl<'a> Recorder<'a> {
    pub fn new(worker: usize, stats: Option<&'a WorkerStats>, layers: &'a Layers) -> Recorder<'a> {
        Recorder {
            worker,
            stats,
            layers,
            now: Instant::now(),
            held: None,
        }
    }

    fn layer(&self, id: LayerId) -> Option<&'a LayerWorker> {
        self.layers.get(id)?.stats.worker(self.worker)
    }

    /// Counts one reply; `applied` holds, per layer, the TTL followers that set a TTL.
    pub fn record(&mut self, track: &Track, reply: &Reply, applied: &[(LayerId, u32)]) {
        let usec = u64::try_from(
            self.now
                .saturating_duration_since(track.started)
                .as_micros(),
        )
        .unwrap_or(u64::MAX);
        let failed = is_error(reply);
        if let (Some(stats), Some(cmd)) = (self.stats, track.command) {
            match stats.by_command.get(usize::from(cmd)) {
                Some(c) if track.rejected => c.rejected.incr(),
                Some(c) => {
                    c.calls.incr();
                    c.usec.add(usec);
                    if failed {
                        c.failed.incr();
                    }
                }
                None => {}
            }
        }
        self.record_latency(track.layer, track.class, usec);
        let Some(id) = track.layer else {
            return;
        };
        let Some(lw) = self.layer(id) else {
            return;
        };
        if failed {
            lw.errors.incr();
            return;
        }
        if track.rewrites > 0 {
            lw.expirations.add(u64::from(track.rewrites));
        }
        for &(layer, n) in applied {
            if let Some(w) = self.layer(layer) {
                w.expirations.add(u64::from(n));
            }
        }
        match track.outcome {
            Outcome::Skip => {}
            Outcome::Read => count_read(lw, !is_empty(reply)),
            Outcome::Count => count_read(lw, integer(reply).is_some_and(|n| n != 0)),
            Outcome::Ttl => count_read(lw, integer(reply).is_some_and(|n| n != -2)),
            Outcome::Type => count_read(lw, !matches!(status(reply), Some(b"none"))),
            Outcome::GetDel => {
                let hit = !is_empty(reply);
                count_read(lw, hit);
                if hit {
                    lw.deletes.incr();
                }
            }
            Outcome::Exists => {
                let found = integer(reply)
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0);
                // The reply does not say which keys were found: a mixed-layer EXISTS is
                // counted in its first key's layer.
                lw.hits.add(found);
                lw.misses.add(u64::from(track.keys).saturating_sub(found));
            }
            Outcome::Mget => {
                let mut index = 0usize;
                for_each_element_nil(reply, |nil| {
                    let target = match &track.key_layers {
                        Some(ids) => ids.get(index).and_then(|&k| self.layer(k)),
                        None => Some(lw),
                    };
                    if let Some(t) = target {
                        count_read(t, !nil);
                    }
                    index += 1;
                });
            }
            Outcome::Write => self.per_key(track, lw, |w| &w.writes),
            Outcome::Delete => self.per_key(track, lw, |w| &w.deletes),
            Outcome::Warm => lw.warms.incr(),
        }
    }

    /// Adds one per key to the counter `pick` selects, in each key's own layer.
    fn per_key(
        &self,
        track: &Track,
        first: &LayerWorker,
        pick: impl Fn(&LayerWorker) -> &crate::stats::Counter,
    ) {
        match &track.key_layers {
            None => pick(first).add(u64::from(track.keys)),
            Some(ids) => {
                for &id in ids.iter() {
                    if let Some(w) = self.layer(id) {
                        pick(w).incr();
                    }
                }
            }
        }
    }

    /// Records in the layer's histogram for the class, or the keyless one when `id` is None.
    fn record_latency(&mut self, id: Option<LayerId>, class: Class, usec: u64) {
        let same = matches!(&self.held, Some((l, c, _)) if *l == id && *c == class);
        if !same {
            self.held = None;
            let histograms = match id {
                Some(id) => self
                    .layers
                    .get(id)
                    .and_then(|l| l.stats.worker(self.worker))
                    .map(|w| &w.latency),
                None => self.stats.map(|s| &s.keyless_latency),
            };
            let guard = histograms
                .and_then(|h| h.get(class as usize))
                .and_then(|l| l.lock());
            self.held = guard.map(|g| (id, class, g));
        }
        if let Some((_, _, guard)) = self.held.as_mut() {
            guard.record(usec);
        }
    }
}

fn count_read(w: &LayerWorker, hit: bool) {
    if hit {
        w.hits.incr();
    } else {
        w.misses.incr();
    }
}

/// An error reply, from a node or from strata.
pub fn is_error(reply: &Reply) -> bool {
    match reply {
        Reply::Error(_) => true,
        Reply::Raw(raw) => raw.first() == Some(&b'-'),
        _ => false,
    }
}

/// Nil, or an empty array: what a read of a missing key returns.
fn is_empty(reply: &Reply) -> bool {
    match reply {
        Reply::Nil | Reply::NilArray => true,
        Reply::Array(items) => items.is_empty(),
        Reply::Raw(raw) => crate::protocol::is_nil_or_empty(raw),
        _ => false,
    }
}

fn integer(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Integer(n) => Some(*n),
        Reply::Raw(raw) => {
            let body = raw.strip_prefix(b":")?;
            let end = memchr::memchr(b'\r', body)?;
            crate::protocol::parse_i64(body.get(..end)?)
        }
        _ => None,
    }
}

fn status(reply: &Reply) -> Option<&[u8]> {
    match reply {
        Reply::Status(s) => Some(s),
        Reply::Raw(raw) => {
            let body = raw.strip_prefix(b"+")?;
            let end = memchr::memchr(b'\r', body)?;
            body.get(..end)
        }
        _ => None,
    }
}

/// Calls `f(is_nil)` for each element of an array reply of bulk strings (MGET's reply).
fn for_each_element_nil(reply: &Reply, mut f: impl FnMut(bool)) {
    match reply {
        Reply::Array(items) => {
            for item in items {
                f(match item {
                    Reply::Raw(raw) => crate::protocol::is_nil(raw),
                    other => matches!(other, Reply::Nil | Reply::NilArray),
                })
            }
        }
        Reply::Raw(raw) => {
            let mut rest: &[u8] = raw;
            let Some(count) = header(&mut rest, b'*') else {
                return;
            };
            for _ in 0..count.max(0) {
                // RESP3's null.
                if let Some(after) = rest.strip_prefix(b"_\r\n") {
                    rest = after;
                    f(true);
                    continue;
                }
                let Some(len) = header(&mut rest, b'$') else {
                    return;
                };
                if let Ok(len) = usize::try_from(len) {
                    // Skip the data and its CRLF.
                    rest = rest.get(len.saturating_add(2)..).unwrap_or_default();
                }
                f(len < 0);
            }
        }
        _ => {}
    }
}

/// Reads `<prefix><number>\r\n` from the front of `rest`.
fn header(rest: &mut &[u8], prefix: u8) -> Option<i64> {
    let body = rest.strip_prefix(&[prefix])?;
    let end = memchr::memchr(b'\r', body)?;
    let n = crate::protocol::parse_i64(body.get(..end)?)?;
    *rest = body.get(end + 2..)?;
    Some(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::table::lookup;

    fn raw(s: &'static [u8]) -> Reply {
        Reply::Raw(Bytes::from_static(s))
    }

    #[test]
    fn outcomes_from_the_table() {
        let t = |name: &[u8]| traits_of(lookup(name).unwrap());
        assert_eq!(t(b"get").outcome, Outcome::Read);
        assert_eq!(t(b"get").class, Class::Read);
        assert_eq!(t(b"set").outcome, Outcome::Write);
        assert_eq!(t(b"set").class, Class::Write);
        assert_eq!(t(b"mget").outcome, Outcome::Mget);
        assert_eq!(t(b"scard").outcome, Outcome::Count);
        assert_eq!(t(b"zrank").outcome, Outcome::Read);
        assert_eq!(t(b"dbsize").outcome, Outcome::Skip);
        assert_eq!(t(b"ping").class, Class::Other);
    }

    #[test]
    fn reads_replies() {
        assert!(is_empty(&raw(b"$-1\r\n")));
        assert!(is_empty(&raw(b"*0\r\n")));
        assert!(!is_empty(&raw(b"$0\r\n\r\n")));
        assert!(is_error(&raw(b"-WRONGTYPE x\r\n")));
        assert_eq!(integer(&raw(b":-2\r\n")), Some(-2));
        assert_eq!(status(&raw(b"+none\r\n")), Some(&b"none"[..]));
        let mut nils = Vec::new();
        for_each_element_nil(&raw(b"*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n"), |n| {
            nils.push(n)
        });
        assert_eq!(nils, [false, true, false]);
        nils.clear();
        for_each_element_nil(&Reply::Array(vec![Reply::Nil, Reply::bulk("x")]), |n| {
            nils.push(n)
        });
        assert_eq!(nils, [true, false]);
        // Truncated input stops quietly.
        for_each_element_nil(&raw(b"*3\r\n$5\r\nab"), |_| {});
    }
}
