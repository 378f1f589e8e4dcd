//! Miss coalescing (docs/coalescing.md): while a read of a layer with `coalesce: true` is on its
//! way to the nodes, an identical read (the same bytes, in the same protocol) waits for its
//! reply instead of being sent again. A hot key that just expired, read by a hundred clients
//! at once, costs the nodes one read.
//!
//! - A read joins one in flight only if no write of its key's bucket and no flush came through
//!   strata since that one was sent (`Coherence::changed`, the near cache's counters): a
//!   client that wrote a key never gets the answer of a read sent before its write.
//! - The flight is a `Shared` future: whichever waiting client's session polls it drives it,
//!   so no client waits on another one's session (a slow reader, a long pipeline).
//! - The map holds only weak references to flights in progress: an entry goes when its flight
//!   is done or when every client waiting on it is gone.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::future::{FutureExt, Shared, WeakShared};
use tokio::sync::oneshot;

use crate::near::{Coherence, FillToken};
use crate::protocol::{Proto, Reply};

use super::pending::Pending;

/// Shards of the map of flights: reads of different keys from different workers rarely meet
/// on one lock.
const SHARDS: usize = 16;

/// A read on its way, as every client waiting on it holds it: `None` when its leader was
/// gone before it sent the read (its client disconnected mid-request).
type FlightFuture = Pin<Box<dyn Future<Output = Option<Reply>> + Send>>;

type Map = HashMap<FlightKey, Entry, BuildHasherDefault<KeyHash>>;
type Shards = Arc<[Mutex<Map>; SHARDS]>;

/// The reads in flight, process-wide (shared by every worker's [`Coordinator`](super::Coordinator)).
#[derive(Default)]
pub struct Coalescer {
    shards: Shards,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

/// What makes two reads identical: the request's bytes and the protocol of the reply. Its
/// hash is computed once (xxh3, for the shard and the map both): the map's default SipHash,
/// three times per read, cost more than the rest of the lookup (callgrind).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlightKey {
    hash: u64,
    proto: Proto,
    payload: Bytes,
}

impl FlightKey {
    fn new(proto: Proto, payload: Bytes) -> FlightKey {
        FlightKey {
            hash: xxhash_rust::xxh3::xxh3_64(&payload),
            proto,
            payload,
        }
    }
}

impl std::hash::Hash for FlightKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The map's hasher: a [`FlightKey`] hashes to its precomputed hash.
#[derive(Default)]
struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (FlightKey's Hash); anything else still hashes.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    /// Taken when the flight began, before its read was sent: a write or a flush since then
    /// ends joining.
    token: FillToken,
    flight: WeakShared<FlightFuture>,
    /// Which flight this is, so a finished one removes only itself.
    id: u64,
}

/// What a read does: wait for an identical one in flight, or be sent and let others wait.
pub enum Join {
    /// An identical read in flight.
    Joined(Flight),
    /// The caller sends the read and hands its pending reply to [`Lead::share`].
    Lead(Lead),
}

/// A flight as one waiting client holds it.
pub struct Flight(Shared<FlightFuture>);

impl Flight {
    /// The flight's reply; `None` when its leader was gone before it sent the read.
    pub async fn reply(self) -> Option<Reply> {
        self.0.await
    }
}

/// The read that goes to the nodes; identical reads wait on its flight from the moment it is
/// in the map (before it is sent).
pub struct Lead {
    send: oneshot::Sender<Pending>,
    flight: Shared<FlightFuture>,
}

fn shard_of(key: &FlightKey) -> usize {
    // The high bits: hashbrown uses the low ones for the bucket and the top 7 as the tag.
    ((key.hash >> 32) as usize) % SHARDS
}

fn lock(m: &Mutex<Map>) -> MutexGuard<'_, Map> {
    // Nothing is left half-updated by a panic while it is held: inserts and removes only.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Coalescer {
    /// Joins the flight of an identical read of `key` (whose request bytes are `payload`)
    /// when one is in flight and no write or flush came since it began; else the caller
    /// leads a new flight, in the map at once (so two identical reads arriving together on
    /// two workers do not both lead).
    pub fn join(&self, coherence: &Coherence, key: &[u8], proto: Proto, payload: Bytes) -> Join {
        let key_of = FlightKey::new(proto, payload);
        let shard = shard_of(&key_of);
        let Some(cell) = self.shards.get(shard) else {
            return Join::Lead(self.begin(coherence, key, key_of).0);
        };
        let mut map = lock(cell);
        if let Some(entry) = map.get(&key_of) {
            if !coherence.changed(&entry.token) {
                if let Some(flight) = entry.flight.upgrade() {
                    return Join::Joined(Flight(flight));
                }
            }
        }
        let (lead, entry) = self.begin(coherence, key, key_of.clone());
        // Replaces a flight a write made unjoinable: later reads join this newer one.
        if let Some(entry) = entry {
            map.insert(key_of, entry);
        }
        Join::Lead(lead)
    }

    /// A new flight, and its map entry.
    fn begin(&self, coherence: &Coherence, key: &[u8], key_of: FlightKey) -> (Lead, Option<Entry>) {
        // Taken before the read is sent, as a near cache fill's.
        let token = coherence.begin(key);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (send, receive) = oneshot::channel::<Pending>();
        let done = Done {
            shards: self.shards.clone(),
            key: key_of,
            id,
        };
        let inner: FlightFuture = Box::pin(async move {
            let done = done;
            let mut pending = receive.await.ok()?;
            let reply = std::future::poll_fn(|cx| pending.poll_reply(cx)).await;
            // Gone from the map before anyone has the reply: later reads are sent anew.
            drop(done);
            Some(reply)
        });
        let flight = inner.shared();
        let entry = flight.downgrade().map(|weak| Entry {
            token,
            flight: weak,
            id,
        });
        (Lead { send, flight }, entry)
    }

    /// Flights in the map (tests).
    pub fn in_flight(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

impl Lead {
    /// Hands the flight its read, sent: the leader then waits on the flight like the others.
    pub fn share(self, pending: Pending) -> Flight {
        // The receiver lives in the flight, which this lead holds: the send cannot fail.
        let _ = self.send.send(pending);
        Flight(self.flight)
    }
}

/// Removes its flight from the map when the flight is done, or dropped unfinished (every
/// client waiting on it gone).
struct Done {
    shards: Shards,
    key: FlightKey,
    id: u64,
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(shard) = self.shards.get(shard_of(&self.key)) {
            let mut map = lock(shard);
            if map.get(&self.key).is_some_and(|e| e.id == self.id) {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
