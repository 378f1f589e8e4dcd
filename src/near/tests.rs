//! Unit tests of the near cache's store and coherence: the fill race, readiness, flushes,
//! lives and the byte bound.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::config::{ByteSize, NearCacheConfig};

fn config(max_bytes: u64) -> NearCacheConfig {
    NearCacheConfig {
        max_bytes: ByteSize(max_bytes),
        max_value_size: ByteSize(1024),
        max_ttl: Duration::from_secs(60),
    }
}

/// A coherence with one live node, and a store of `route:` on it.
fn ready_store(max_bytes: u64) -> (Arc<Coherence>, Arc<Store>) {
    let c = Arc::new(Coherence::default());
    let s = Arc::new(Store::new("route", "route:", config(max_bytes), c.clone()).unwrap());
    c.set_stores(vec![s.clone()]);
    c.expect_node(0, true);
    c.set_live(0, true, false);
    assert!(c.ready());
    (c, s)
}

fn fill(s: &Store, token: &FillToken, key: &str, value: &str) {
    s.fill(
        token,
        key.as_bytes(),
        value.as_bytes(),
        Instant::now(),
        Duration::from_secs(10),
    );
}

#[test]
fn a_fill_is_kept_and_served_when_nothing_overtook_it() {
    let (c, s) = ready_store(1 << 20);
    let t = c.begin(b"route:a");
    fill(&s, &t, "route:a", "m1");
    assert_eq!(s.get(b"route:a", Instant::now()), Some(Bytes::from("m1")));
    assert_eq!(s.entries(), 1);
}

#[test]
fn an_invalidation_or_a_flush_during_a_fill_drops_it() {
    let (c, s) = ready_store(1 << 20);
    // The race: the invalidation of a write came before the older value.
    let t = c.begin(b"route:a");
    c.invalidate(b"route:a");
    fill(&s, &t, "route:a", "old");
    assert_eq!(s.get(b"route:a", Instant::now()), None);
    let t = c.begin(b"route:b");
    c.flush("test");
    fill(&s, &t, "route:b", "old");
    assert_eq!(s.get(b"route:b", Instant::now()), None);
    assert_eq!(
        s.counts
            .fills_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // An invalidation after the fill removes the entry.
    let t = c.begin(b"route:c");
    fill(&s, &t, "route:c", "v");
    c.invalidate(b"route:c");
    assert_eq!(s.get(b"route:c", Instant::now()), None);
    // Keys of another prefix are not touched.
    let t = c.begin(b"route:d");
    fill(&s, &t, "route:d", "v");
    c.invalidate(b"meta:d");
    assert!(s.get(b"route:d", Instant::now()).is_some());
}

#[test]
fn nothing_is_served_or_kept_unless_every_expected_stream_is_live() {
    let (c, s) = ready_store(1 << 20);
    let t = c.begin(b"route:a");
    fill(&s, &t, "route:a", "v");
    // A second node joins: not ready until its stream is live, and flushed.
    c.expect_node(1, true);
    assert!(!c.ready());
    assert_eq!(s.get(b"route:a", Instant::now()), None);
    assert!(s.is_empty());
    let t = c.begin(b"route:a");
    fill(&s, &t, "route:a", "v");
    assert!(s.is_empty(), "a fill while not ready is not kept");
    c.set_live(1, true, false);
    assert!(c.ready());
    let t = c.begin(b"route:a");
    fill(&s, &t, "route:a", "v");
    assert!(s.get(b"route:a", Instant::now()).is_some());
    // Losing a stream flushes.
    c.set_live(0, false, false);
    assert!(!c.ready() && s.is_empty());
}

#[test]
fn the_streams_of_a_backend_follow_its_primaries() {
    let (c, s) = ready_store(1 << 20);
    assert_eq!(c.stream_counts(), (1, 1));
    // A cluster's primaries 5 and 6 are needed too.
    c.expect_backends([5, 6].into_iter().collect(), BTreeSet::new());
    assert!(!c.ready());
    assert_eq!(c.stream_counts(), (3, 1));
    c.set_live(5, true, false);
    c.set_live(6, true, false);
    assert!(c.ready());
    let t = c.begin(b"route:a");
    fill(&s, &t, "route:a", "v");
    assert!(s.get(b"route:a", Instant::now()).is_some());
    // A failover: 7 replaces 6. Flushed, and not ready until 7's stream is live.
    c.expect_backends([5, 7].into_iter().collect(), BTreeSet::new());
    assert!(!c.ready() && s.is_empty());
    assert!(c.expects(7) && !c.expects(6));
    c.set_live(7, true, false);
    assert!(c.ready());
    let t = c.begin(b"route:a");
    fill(&s, &t, "route:a", "v");
    // The demoted primary's stream ends without a flush.
    c.set_live(6, false, false);
    assert!(c.ready());
    assert!(s.get(b"route:a", Instant::now()).is_some());
    // The same primaries again: nothing changes.
    c.expect_backends([5, 7].into_iter().collect(), BTreeSet::new());
    assert!(s.get(b"route:a", Instant::now()).is_some());
    assert_eq!(c.stream_counts(), (3, 3));
    // A backend without a near-cached layer: its primary is needed only while clients track
    // every key (none here), so the near cache stays ready, and keeps its entries, without
    // its stream.
    c.expect_backends([5, 7].into_iter().collect(), [9].into_iter().collect());
    assert!(!c.expects(9));
    assert_eq!(c.stream_counts(), (3, 3));
    assert!(c.ready());
    assert!(s.get(b"route:a", Instant::now()).is_some());
}

#[test]
fn a_redirect_during_a_fill_drops_it() {
    let (c, s) = ready_store(1 << 20);
    let t = c.begin(b"route:a");
    c.note_redirect();
    fill(&s, &t, "route:a", "from the migration target");
    assert!(s.is_empty());
    assert!(c.changed(&t));
}

#[test]
fn an_entry_lives_no_longer_than_its_key_or_max_ttl() {
    let (c, s) = ready_store(1 << 20);
    assert_eq!(s.life(-1, 10), Some(Duration::from_secs(60)));
    assert_eq!(s.life(1500, 10), Some(Duration::from_millis(1500)));
    assert_eq!(s.life(120_000, 10), Some(Duration::from_secs(60)));
    assert_eq!(s.life(-2, 10), None, "no key");
    assert_eq!(s.life(0, 10), None);
    assert_eq!(s.life(-1, 2000), None, "past max_value_size");
    let t = c.begin(b"route:a");
    let sent = Instant::now();
    s.fill(&t, b"route:a", b"v", sent, Duration::from_millis(5));
    assert!(s.get(b"route:a", sent).is_some());
    assert_eq!(s.get(b"route:a", sent + Duration::from_millis(5)), None);
    assert!(s.is_empty(), "an expired entry is dropped when met");
}

#[test]
fn the_store_stays_within_its_bytes() {
    let budget = 64 * 1024;
    let (c, s) = ready_store(budget);
    for i in 0..2000 {
        let key = format!("route:{i}");
        let t = c.begin(key.as_bytes());
        fill(&s, &t, &key, &"x".repeat(100));
    }
    assert!(s.bytes() <= budget, "{} > {budget}", s.bytes());
    assert!(s.evictions() > 0);
    // A second fill of a key replaces its value: not an eviction.
    let (c, s) = ready_store(1 << 20);
    for _ in 0..3 {
        let t = c.begin(b"route:same");
        fill(&s, &t, "route:same", "v");
    }
    assert_eq!((s.entries(), s.evictions()), (1, 0));
    let per_entry = "route:1000".len() as u64 + 100 + ENTRY_OVERHEAD;
    assert!(s.entries() <= budget / (per_entry - 4));
}

#[test]
fn tracked_prefixes_do_not_overlap() {
    let c = Arc::new(Coherence::default());
    let store = |name: &str, prefix: &str| {
        Arc::new(Store::new(name, prefix, config(1 << 20), c.clone()).unwrap())
    };
    c.set_stores(vec![
        store("a", "route:hot:"),
        store("b", "route:"),
        store("c", "meta:"),
        store("d", "meta:"),
    ]);
    assert_eq!(c.prefixes(), vec![b"meta:".to_vec(), b"route:".to_vec()]);
}

/// A read served from an entry takes its token first (a tracked read, `coordinator/tracked.rs`:
/// the token is taken at dispatch, the near cache looked up in the plan), and its client is
/// told when the token shows a change at its end. So an invalidation or a flush that removes
/// an entry such a read was served from must show in the read's token afterwards, even when
/// the token was taken while the invalidation was under way (after its first count, before
/// the removal). Two threads race: one fills the entry and removes it (an invalidation or a
/// flush, in turn), over and over; the other takes a token and reads the entry, over and
/// over, and for each read served checks its token once that fill's removal is over (the
/// remover waits for that check before it counts anything more). Until 20,000 reads were
/// served, or 3 s.
#[test]
fn a_read_served_from_an_entry_being_removed_sees_the_change() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const SERVED: usize = 20_000;
    let (c, s) = ready_store(1 << 20);
    let key = b"route:a";
    // The last round removed; the round whose value the reader was served and is checking
    // (0: none); the last round it checked.
    let removed = Arc::new(AtomicUsize::new(0));
    let checking = Arc::new(AtomicUsize::new(0));
    let checked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let remover = {
        let (c, s) = (c.clone(), s.clone());
        let (removed, checking, checked, done) = (
            removed.clone(),
            checking.clone(),
            checked.clone(),
            done.clone(),
        );
        std::thread::spawn(move || {
            for n in 1.. {
                if done.load(Ordering::Acquire) {
                    break;
                }
                let t = c.begin(key);
                fill(&s, &t, "route:a", &n.to_string());
                if n % 2 == 0 {
                    c.invalidate(key);
                } else {
                    c.flush("test");
                }
                removed.store(n, Ordering::Release);
                if checking.load(Ordering::Acquire) == n {
                    while checked.load(Ordering::Acquire) < n {
                        std::thread::yield_now();
                    }
                }
            }
        })
    };
    let (mut served, mut missed) = (0, Vec::new());
    let end = Instant::now() + Duration::from_secs(3);
    while served < SERVED && Instant::now() < end {
        let token = c.begin(key);
        let Some(value) = s.get(key, Instant::now()) else {
            continue;
        };
        let n: usize = std::str::from_utf8(&value).unwrap().parse().unwrap();
        checking.store(n, Ordering::Release);
        while removed.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        served += 1;
        if !c.changed(&token) {
            missed.push(n);
        }
        checked.store(n, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    remover.join().unwrap();
    assert!(served > 0, "no read was served from the entry");
    assert!(
        missed.is_empty(),
        "{} of {served} reads served from an entry then removed saw no change (rounds {:?}; \
         even: an invalidation, odd: a flush)",
        missed.len(),
        &missed[..missed.len().min(20)]
    );
}
