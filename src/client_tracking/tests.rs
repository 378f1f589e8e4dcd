use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::*;

fn take(inbox: &Inbox) -> Vec<Message> {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    match inbox.poll_take(&mut cx, &mut None) {
        Poll::Ready(m) => m.into_iter().collect(),
        Poll::Pending => Vec::new(),
    }
}

fn tracker(hub: &Hub, id: u64, options: Options) -> Arc<Inbox> {
    let inbox = Arc::new(Inbox::default());
    hub.enable(Arc::new(Tracker::new(id, options, inbox.clone(), None)));
    inbox
}

fn keys(k: &[&str]) -> Message {
    Message::Keys(
        k.iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect(),
    )
}

#[test]
fn a_read_key_is_invalidated_once() {
    let hub = Hub::default();
    let inbox = tracker(&hub, 1, Options::default());
    let t = hub.tracker(1).unwrap();
    hub.remember(&t, &Bytes::from("a"));
    hub.invalidate([&b"b"[..]], None);
    assert!(take(&inbox).is_empty());
    hub.invalidate([&b"a"[..]], None);
    assert_eq!(take(&inbox), vec![keys(&["a"])]);
    // Told once: the key left the table.
    hub.invalidate([&b"a"[..]], None);
    assert!(take(&inbox).is_empty());
    assert_eq!(hub.table.keys(), 0);
}

#[test]
fn bcast_prefixes_and_noloop() {
    let hub = Hub::default();
    let bcast = Options {
        bcast: true,
        noloop: true,
        prefixes: vec![Bytes::from("user:")],
        ..Options::default()
    };
    let inbox = tracker(&hub, 1, bcast);
    hub.invalidate([&b"user:1"[..], &b"other"[..]], None);
    assert_eq!(take(&inbox), vec![keys(&["user:1"])]);
    // Its own write is not reported to it (NOLOOP), another's is.
    hub.invalidate([&b"user:2"[..]], Some(1));
    assert!(take(&inbox).is_empty());
    hub.invalidate([&b"user:2"[..]], Some(2));
    assert_eq!(take(&inbox), vec![keys(&["user:2"])]);
}

#[test]
fn flush_reaches_everyone_and_empties_the_table() {
    let hub = Hub::default();
    let a = tracker(&hub, 1, Options::default());
    let b = tracker(
        &hub,
        2,
        Options {
            bcast: true,
            prefixes: vec![Bytes::new()],
            ..Options::default()
        },
    );
    hub.remember(&hub.tracker(1).unwrap(), &Bytes::from("k"));
    hub.flush();
    assert_eq!(take(&a), vec![Message::Flush]);
    assert_eq!(take(&b), vec![Message::Flush]);
    assert_eq!(hub.table.keys(), 0);
    hub.disable(1);
    hub.disable(2);
    assert!(!hub.active());
}

#[test]
fn the_table_stays_within_its_bound() {
    let hub = Hub::default();
    hub.configure(Limits {
        max_keys: 10,
        ..Limits::default()
    });
    let inbox = tracker(&hub, 1, Options::default());
    let t = hub.tracker(1).unwrap();
    for i in 0..25 {
        hub.remember(&t, &Bytes::from(format!("k{i}")));
    }
    assert_eq!(hub.table.keys(), 10);
    let told: usize = take(&inbox)
        .iter()
        .map(|m| match m {
            Message::Keys(k) => k.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(told, 15);
    assert_eq!(
        hub.counters
            .evicted
            .load(std::sync::atomic::Ordering::Relaxed),
        15
    );
}

#[test]
fn a_full_inbox_collapses_into_a_flush() {
    let inbox = Inbox::default();
    for i in 0..100 {
        inbox.post(keys(&[&format!("key:{i}")]), 1000);
    }
    let got = take(&inbox);
    assert!(got.len() < 100);
    assert!(got.contains(&Message::Flush));
}

#[test]
fn a_gone_redirect_target_is_reported_each_time() {
    let hub = Hub::default();
    let own = Arc::new(Inbox::default());
    let target = Arc::new(Inbox::default());
    let options = Options {
        bcast: true,
        prefixes: vec![Bytes::new()],
        redirect: 9,
        ..Options::default()
    };
    hub.enable(Arc::new(Tracker::new(
        1,
        options,
        own.clone(),
        Some(target.clone()),
    )));
    hub.invalidate([&b"x"[..]], None);
    assert_eq!(take(&target), vec![keys(&["x"])]);
    target.close();
    hub.invalidate([&b"x"[..]], None);
    hub.invalidate([&b"y"[..]], None);
    // Told each time a message is lost, as Redis tells a RESP3 client.
    assert_eq!(
        take(&own),
        vec![Message::RedirectBroken(9), Message::RedirectBroken(9)]
    );
    assert!(hub.tracker(1).unwrap().redirect_broken());
}

#[test]
fn messages_encode_as_redis_writes_them() {
    let mut out = bytes::BytesMut::new();
    assert!(inbox::encode(&keys(&["a"]), true, false, &mut out));
    assert_eq!(&out[..], b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n");
    out.clear();
    assert!(inbox::encode(&Message::Flush, true, false, &mut out));
    assert_eq!(&out[..], b">2\r\n$10\r\ninvalidate\r\n_\r\n");
    out.clear();
    // RESP2: only to a subscribed client, as a message of __redis__:invalidate.
    assert!(!inbox::encode(&keys(&["a"]), false, false, &mut out));
    assert!(inbox::encode(&keys(&["a"]), false, true, &mut out));
    assert_eq!(
        &out[..],
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\na\r\n"
    );
}

#[test]
fn own_writes_are_told_after_the_reply_and_never_with_noloop() {
    let hub = Hub::default();
    let own = tracker(&hub, 1, Options::default());
    let quiet = tracker(
        &hub,
        2,
        Options {
            noloop: true,
            ..Options::default()
        },
    );
    for id in [1, 2] {
        hub.remember(&hub.tracker(id).unwrap(), &Bytes::from("k"));
    }
    // Client 1 writes k: before the write is sent, it stops being k's reader, so the node's
    // report (which may come first) reaches only client 2.
    hub.before_write([&b"k"[..]], 1);
    hub.invalidate([&b"k"[..]], None);
    assert!(take(&own).is_empty());
    assert_eq!(take(&quiet), vec![keys(&["k"])]);
    // Its reply in: client 1 is told of its own write.
    hub.after_write([&b"k"[..]], 1);
    assert_eq!(take(&own), vec![keys(&["k"])]);
    // NOLOOP: client 2 writes a key it read and is never told.
    hub.remember(&hub.tracker(2).unwrap(), &Bytes::from("q"));
    hub.before_write([&b"q"[..]], 2);
    hub.invalidate([&b"q"[..]], None);
    hub.after_write([&b"q"[..]], 2);
    assert!(take(&quiet).is_empty());
}

/// Counts its wakes.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn take_ready_takes_without_waiting_and_the_next_post_still_wakes() {
    let inbox = Inbox::default();
    let wakes = Arc::new(Wakes::default());
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut registered = None;
    assert!(inbox.poll_take(&mut cx, &mut registered).is_pending());
    assert!(inbox.take_ready(&mut registered).is_none());
    // Posted, then taken between passes (behind a reply), not through poll_take.
    inbox.post(keys(&["a"]), 1000);
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        inbox.take_ready(&mut registered).map(Vec::from),
        Some(vec![keys(&["a"])])
    );
    assert!(inbox.take_ready(&mut registered).is_none());
    // The post's wake used the waker up: the next poll registers again, so a later post
    // wakes the session (it would wait for ever otherwise).
    assert!(inbox.poll_take(&mut cx, &mut registered).is_pending());
    inbox.post(keys(&["b"]), 1000);
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    match inbox.poll_take(&mut cx, &mut registered) {
        Poll::Ready(m) => assert_eq!(Vec::from(m), vec![keys(&["b"])]),
        Poll::Pending => panic!("the second post is not there"),
    }
}
