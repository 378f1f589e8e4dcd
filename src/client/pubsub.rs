//! Pub/Sub for one client session.
//!
//! A channel is placed on the ring like a key: SUBSCRIBE (and SSUBSCRIBE) subscribe on the
//! channel's node, PUBLISH (SPUBLISH) is sent to it, so publisher and subscribers meet on one
//! node. Pattern subscriptions go to every node (a matching channel may live on any) and their
//! messages are merged. Each session has one subscriber connection of its own per node it
//! listens to (dedicated, never shared); a task per connection forwards the node's `message`
//! / `pmessage` / `smessage` frames to the session, which writes them to the client between
//! replies. The subscribe / unsubscribe confirmations are strata's own, with the session's
//! own subscription count, as Redis gives them. While subscribed, only the commands Redis
//! allows in that state are accepted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::backend::stream::{NodeReader, NodeWriter};
use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

use crate::backend::dedicated::{self, Counted};
use crate::backend::Router;
use crate::coordinator::pending::{Pending, TaskOutput};
use crate::protocol::reply::command_bytes;
use crate::protocol::{decode_reply, Reply, Request};

/// Messages waiting for the client, per session; past it the node connection's reading waits
/// (and the node's own output buffer limit applies).
const QUEUE: usize = 1024;

/// The three kinds of subscription.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    fn of(name: &str) -> Option<(Kind, bool)> {
        Some(match name {
            "subscribe" => (Kind::Channel, true),
            "unsubscribe" => (Kind::Channel, false),
            "psubscribe" => (Kind::Pattern, true),
            "punsubscribe" => (Kind::Pattern, false),
            "ssubscribe" => (Kind::Shard, true),
            "sunsubscribe" => (Kind::Shard, false),
            _ => return None,
        })
    }

    fn verb(self, on: bool) -> &'static str {
        match (self, on) {
            (Kind::Channel, true) => "subscribe",
            (Kind::Channel, false) => "unsubscribe",
            (Kind::Pattern, true) => "psubscribe",
            (Kind::Pattern, false) => "punsubscribe",
            (Kind::Shard, true) => "ssubscribe",
            (Kind::Shard, false) => "sunsubscribe",
        }
    }
}

/// The subscriber connection to one node; counts as one of the node's dedicated connections
/// (`limits.max_dedicated_per_node`).
struct Link {
    write: NodeWriter,
    reader: tokio::task::JoinHandle<()>,
    /// One unit per subscribe / unsubscribe confirmation the node sent.
    confirmed: mpsc::Receiver<()>,
    _counted: Counted,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One session's subscriptions.
pub struct PubSub {
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shards: BTreeSet<Bytes>,
    links: Arc<Mutex<HashMap<usize, Link>>>,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
}

impl Default for PubSub {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        PubSub {
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shards: BTreeSet::new(),
            links: Arc::default(),
            tx,
            rx,
        }
    }
}

impl PubSub {
    /// True while the client has any subscription.
    pub fn active(&self) -> bool {
        self.channels.len() + self.patterns.len() + self.shards.len() > 0
    }

    /// Channels, patterns and shard channels subscribed (CLIENT LIST's `sub`, `psub`, `ssub`).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shards.len())
    }

    /// The count a confirmation carries: shard channels are counted on their own, channels
    /// and patterns together (Redis 7.0's two subscription counts).
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shards.len(),
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
        }
    }

    /// A message already waiting, without waiting.
    pub fn try_message(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    /// The next message for the client (waits; never ends while the session lives).
    pub async fn next_message(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Whether this handles the request: the subscribe family always, and, for a RESP2
    /// client, everything while subscribed (to answer or refuse it: RESP3 clients may run any
    /// command while subscribed, as with Redis).
    pub fn takes(&self, request: &Request, resp3: bool) -> bool {
        // Every request asks this: no allocation.
        const FAMILY: [&[u8]; 6] = [
            b"subscribe",
            b"unsubscribe",
            b"psubscribe",
            b"punsubscribe",
            b"ssubscribe",
            b"sunsubscribe",
        ];
        let name = request.args.first().map(|a| a.as_ref()).unwrap_or_default();
        // QUIT closes the connection as usual.
        FAMILY.iter().any(|f| name.eq_ignore_ascii_case(f))
            || (!resp3 && self.active() && !name.eq_ignore_ascii_case(b"quit"))
    }

    /// Handles a request [`PubSub::takes`].
    /// Confirmations are push frames for a RESP3 client (`resp3`).
    pub fn handle(&mut self, router: &Arc<Router>, request: Request, resp3: bool) -> Pending {
        let name = lower(request.args.first());
        let Some((kind, on)) = Kind::of(&name) else {
            return self.in_subscribed_mode(&name, &request);
        };
        let names: Vec<Bytes> = request.args.iter().skip(1).cloned().collect();
        if on && names.is_empty() {
            return Pending::ready(crate::command::classify::wrong_arity(&name));
        }
        // Unsubscribing from nothing named: from everything of that kind.
        let names = if !on && names.is_empty() {
            self.set_mut(kind).iter().cloned().collect()
        } else {
            names
        };
        let mut frames = BytesMut::new();
        let mut changed = Vec::new();
        for n in &names {
            let set = self.set_mut(kind);
            let fresh = if on {
                set.insert(n.clone())
            } else {
                set.remove(n)
            };
            if fresh {
                changed.push(n.clone());
            }
            confirmation(kind.verb(on), Some(n), self.count(kind), resp3, &mut frames);
        }
        if names.is_empty() {
            // UNSUBSCRIBE with nothing subscribed: one reply with a nil name, as Redis does.
            confirmation(kind.verb(on), None, self.count(kind), resp3, &mut frames);
        }
        let reply = Reply::Raw(frames.freeze());
        if changed.is_empty() {
            return Pending::ready(reply);
        }
        // Tell the nodes: the channel's node, or every node for patterns.
        let view = router.view();
        let topology = &view.topology;
        let mut per_node: HashMap<usize, Vec<Bytes>> = HashMap::new();
        for n in changed {
            // A channel is placed like a key of its name (where PUBLISH sends it); a Redis
            // Cluster passes every publish to all its nodes, so one of them takes its
            // patterns.
            let nodes = match kind {
                Kind::Pattern => topology.pattern_nodes(),
                _ => view.route(&n).into_iter().collect(),
            };
            for node in nodes {
                per_node.entry(node).or_default().push(n.clone());
            }
        }
        let verb = kind.verb(on).to_ascii_uppercase();
        let links = self.links.clone();
        let tx = self.tx.clone();
        drop(view);
        let router = router.clone();
        Pending::Dedicated(Box::pin(async move {
            let mut links = links.lock().await;
            let mut failure: Option<String> = None;
            for (node, names) in per_node {
                let args: Vec<&[u8]> = std::iter::once(verb.as_bytes())
                    .chain(names.iter().map(|n| n.as_ref()))
                    .collect();
                let command = command_bytes(args.into_iter());
                if let Err(e) = send(&router, &mut links, node, &tx, &command, names.len()).await {
                    failure.get_or_insert(e);
                }
            }
            TaskOutput {
                reply: match failure {
                    Some(e) => Reply::error(format!("ERR strata: {e}")),
                    None => reply,
                },
                applied: Vec::new(),
            }
        }))
    }

    fn set_mut(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    /// A command other than the subscribe family while subscribed.
    fn in_subscribed_mode(&self, name: &str, request: &Request) -> Pending {
        match name {
            "ping" if request.args.len() <= 2 => {
                let arg = request.args.get(1).cloned().unwrap_or_default();
                Pending::ready(Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(arg)]))
            }
            _ => Pending::ready(Reply::error(format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ))),
        }
    }
}

fn lower(name: Option<&Bytes>) -> String {
    name.map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .unwrap_or_default()
}

/// `*3 $verb $name :count` (a nil name when there is none).
fn confirmation(verb: &str, name: Option<&Bytes>, count: usize, resp3: bool, out: &mut BytesMut) {
    let reply = Reply::Array(vec![
        Reply::bulk(verb.to_string()),
        name.map_or(Reply::Nil, |n| Reply::Bulk(n.clone())),
        Reply::Integer(count as i64),
    ]);
    if resp3 {
        // RESP3 types inside (a missing name is `_`), sent as a push frame.
        let mut frame = BytesMut::new();
        crate::protocol::resp3::encode(&reply, crate::protocol::resp3::Shape::Plain, &mut frame);
        crate::protocol::resp3::push(&frame, out);
    } else {
        reply.encode(out);
    }
}

/// Writes `command` (naming `names` channels or patterns) on the subscriber connection to
/// `node`, opening it (and its reader) first when needed, and waits for the node to confirm
/// each name: once the client has strata's confirmation, a message published to the channel
/// reaches it, as with Redis.
async fn send(
    router: &Router,
    links: &mut HashMap<usize, Link>,
    node: usize,
    tx: &mpsc::Sender<Bytes>,
    command: &[u8],
    names: usize,
) -> Result<(), String> {
    let link = match links.entry(node) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let (info, max) = {
                let view = router.view();
                let node = view.topology.node(node).cloned();
                (node, view.settings.config.limits.max_dedicated_per_node)
            };
            let Some(info) = info else {
                return Err("no such node".into());
            };
            if info.health.is_down() {
                // Without the `ERR strata: ` prefix: the caller adds it.
                return Err(format!("node {} ({}) is marked down", info.id, info.addr));
            }
            let (stream, counted) = dedicated::open(
                &info,
                crate::protocol::Proto::Resp2,
                max,
                router.timeouts().connect(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let (read, write) = stream.into_split();
            let (confirm, confirmed) = mpsc::channel(QUEUE);
            let reader = tokio::spawn(forward_messages(read, tx.clone(), confirm));
            e.insert(Link {
                write,
                reader,
                confirmed,
                _counted: counted,
            })
        }
    };
    // TLS keeps what it encrypted until flushed (a no-op on plain TCP).
    let sent = match link.write.write_all(command).await {
        Ok(()) => link.write.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        links.remove(&node);
        return Err(format!("write failed: {e}"));
    }
    let timeout = router.timeouts().request();
    for _ in 0..names {
        match tokio::time::timeout(timeout, link.confirmed.recv()).await {
            Ok(Some(())) => {}
            // The link cannot be trusted to be in step any more: it is closed.
            Ok(None) => {
                links.remove(&node);
                return Err("subscriber connection closed by node".into());
            }
            Err(_) => {
                links.remove(&node);
                return Err(format!(
                    "no confirmation from the node within {}",
                    humantime::format_duration(timeout)
                ));
            }
        }
    }
    Ok(())
}

/// Reads a subscriber connection: messages go to the session; the node's own confirmations
/// are counted on `confirm` (the session sends the client its own).
async fn forward_messages(
    mut read: NodeReader,
    tx: mpsc::Sender<Bytes>,
    confirm: mpsc::Sender<()>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            match decode_reply(&mut buf) {
                Ok(Some(reply)) => {
                    if is_message(&reply.frame) {
                        if tx.send(reply.raw).await.is_err() {
                            return;
                        }
                    } else if is_confirmation(&reply.frame) && confirm.send(()).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        buf.reserve(16 * 1024);
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn is_confirmation(frame: &BytesFrame) -> bool {
    let BytesFrame::Array(items) = frame else {
        return false;
    };
    matches!(items.first(), Some(BytesFrame::BulkString(kind))
        if [
            &b"subscribe"[..],
            b"unsubscribe",
            b"psubscribe",
            b"punsubscribe",
            b"ssubscribe",
            b"sunsubscribe",
        ]
        .contains(&kind.as_ref()))
}

fn is_message(frame: &BytesFrame) -> bool {
    let BytesFrame::Array(items) = frame else {
        return false;
    };
    matches!(items.first(), Some(BytesFrame::BulkString(kind))
        if [&b"message"[..], b"pmessage", b"smessage"].contains(&kind.as_ref()))
}
