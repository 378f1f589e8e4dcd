//! The coalescer alone: who joins, who leads, and that finished or abandoned flights leave
//! the map.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::coordinator::pending::TaskOutput;

/// A pending reply the test completes through the returned sender.
fn controlled() -> (oneshot::Sender<Reply>, Pending) {
    let (tx, rx) = oneshot::channel::<Reply>();
    let pending = Pending::task(async move {
        TaskOutput {
            reply: rx
                .await
                .unwrap_or_else(|_| Reply::error_static("ERR dropped")),
            applied: Vec::new(),
        }
    });
    (tx, pending)
}

async fn reply_of(flight: Flight) -> Reply {
    flight.reply().await.unwrap()
}

fn get(key: &str) -> Bytes {
    Bytes::from(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()))
}

fn lead(c: &Coalescer, coherence: &Coherence, key: &str) -> Lead {
    match c.join(coherence, key.as_bytes(), Proto::Resp2, get(key)) {
        Join::Lead(lead) => lead,
        Join::Joined(_) => panic!("joined, expected to lead"),
    }
}

fn joined(c: &Coalescer, coherence: &Coherence, key: &str, proto: Proto) -> Option<Flight> {
    match c.join(coherence, key.as_bytes(), proto, get(key)) {
        Join::Joined(p) => Some(p),
        Join::Lead(_) => None,
    }
}

#[tokio::test]
async fn identical_reads_share_one_reply_and_the_flight_leaves_when_done() {
    let c = Coalescer::default();
    let coherence = Coherence::default();
    let (tx, pending) = controlled();
    let leader = lead(&c, &coherence, "result:q").share(pending);
    assert_eq!(c.in_flight(), 1);
    let a = joined(&c, &coherence, "result:q", Proto::Resp2).unwrap();
    let b = joined(&c, &coherence, "result:q", Proto::Resp2).unwrap();
    // Another key, or the same read in another protocol, is not the same read.
    assert!(joined(&c, &coherence, "result:other", Proto::Resp2).is_none());
    assert!(joined(&c, &coherence, "result:q", Proto::Resp3).is_none());
    tx.send(Reply::Bulk(Bytes::from_static(b"v"))).unwrap();
    // A joiner's session may be the one that drives the flight.
    assert_eq!(reply_of(b).await, Reply::Bulk(Bytes::from_static(b"v")));
    assert_eq!(c.in_flight(), 0);
    assert_eq!(reply_of(a).await, Reply::Bulk(Bytes::from_static(b"v")));
    assert_eq!(
        reply_of(leader).await,
        Reply::Bulk(Bytes::from_static(b"v"))
    );
    // Done: the next identical read is sent again.
    assert!(joined(&c, &coherence, "result:q", Proto::Resp2).is_none());
}

#[tokio::test]
async fn a_write_or_a_flush_since_the_flight_was_sent_ends_joining() {
    let c = Coalescer::default();
    let coherence = Coherence::default();
    let (_tx, pending) = controlled();
    let _first = lead(&c, &coherence, "result:q").share(pending);
    coherence.note_write(b"result:q");
    // The write came after the flight was sent: a reader must not get its answer; it leads a
    // new flight, which later readers join.
    let second = lead(&c, &coherence, "result:q");
    let (tx2, pending2) = controlled();
    let second = second.share(pending2);
    let joiner = joined(&c, &coherence, "result:q", Proto::Resp2).unwrap();
    tx2.send(Reply::Integer(2)).unwrap();
    assert_eq!(reply_of(joiner).await, Reply::Integer(2));
    assert_eq!(reply_of(second).await, Reply::Integer(2));

    let (_tx3, pending3) = controlled();
    let _third = lead(&c, &coherence, "result:z").share(pending3);
    coherence.drop_fills();
    assert!(joined(&c, &coherence, "result:z", Proto::Resp2).is_none());
}

#[tokio::test]
async fn a_lead_gone_before_it_sent_leaves_its_joiners_to_send_themselves() {
    let c = Coalescer::default();
    let coherence = Coherence::default();
    let leader = lead(&c, &coherence, "result:q");
    let joiner = joined(&c, &coherence, "result:q", Proto::Resp2).unwrap();
    drop(leader);
    assert_eq!(joiner.reply().await, None);
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn a_flight_every_waiter_left_leaves_the_map() {
    let c = Coalescer::default();
    let coherence = Coherence::default();
    let (_tx, pending) = controlled();
    let leader = lead(&c, &coherence, "result:q").share(pending);
    let joiner = joined(&c, &coherence, "result:q", Proto::Resp2).unwrap();
    drop(leader);
    assert_eq!(c.in_flight(), 1);
    drop(joiner);
    assert_eq!(c.in_flight(), 0);
    assert!(joined(&c, &coherence, "result:q", Proto::Resp2).is_none());
}
