//! MULTI / EXEC / DISCARD / WATCH / UNWATCH for one client session.
//!
//! Commands after MULTI are checked as Redis checks them at queue time (unknown command, arity:
//! the error is the reply and EXEC then answers `EXECABORT`) and queued in strata (`+QUEUED`).
//! At EXEC every key of the transaction must be on one node, else `CROSSSLOT` and nothing runs;
//! the transaction is sent to that node as one `MULTI ... EXEC` block on a dedicated connection
//! (`backend::dedicated`), so it runs atomically there and the client gets the node's EXEC reply.
//! WATCH leases a dedicated connection to the watched keys' node and keeps it until EXEC,
//! DISCARD or UNWATCH; a transaction must then run on that node. With replication, a
//! transaction that ran is sent as a MULTI/EXEC block to the other replicas of its keys too,
//! in the background.

use crate::backend::Lane;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::backend::dedicated::Lease;
use crate::backend::Router;
use crate::client_tracking::Tracker;
use crate::cluster::View;
use crate::command::classify::classify;
use crate::command::keys::key_positions;
use crate::command::spec::{CommandSpec, Route};
use crate::coordinator::pending::{Pending, TaskOutput};
use crate::coordinator::plan::{self, CROSSSLOT};
use crate::coordinator::track::{self, Track};
use crate::coordinator::tracked::tracked_read;
use crate::protocol::reply::command_bytes;
use crate::protocol::{Reply, Request};

/// One session's transaction state.
#[derive(Default)]
pub struct Transaction {
    /// Commands queued since MULTI; `None` outside MULTI.
    queued: Option<Vec<(&'static CommandSpec, Request)>>,
    /// Bytes of the queued commands' arguments (CLIENT LIST's `multi-mem`), kept as they queue.
    queued_bytes: usize,
    /// A command was refused at queue time: EXEC answers EXECABORT.
    dirty: bool,
    /// The node of the WATCH in force (known before its command ran).
    watched: Option<usize>,
    /// The connection that watches (its node is `watched`).
    watch: Arc<Mutex<Option<Lease>>>,
}

/// Commands that are not queued inside MULTI but handled here.
#[inline]
fn is_control(name: &[u8]) -> bool {
    [&b"multi"[..], b"exec", b"discard", b"watch", b"unwatch"]
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c))
}

impl Transaction {
    /// Commands queued and their bytes, or `None` outside MULTI (CLIENT LIST's `multi=` and
    /// `multi-mem=`).
    pub fn queued(&self) -> Option<(usize, usize)> {
        self.queued.as_ref().map(|q| (q.len(), self.queued_bytes))
    }

    /// Whether this session has anything to do with the request: inside MULTI every command,
    /// outside it the transaction commands.
    #[inline]
    pub fn takes(&self, request: &Request) -> bool {
        let name = request.args.first().map(|a| a.as_ref()).unwrap_or_default();
        self.queued.is_some() || is_control(name)
    }

    /// A command [`Transaction::takes`] was refused before it ran (the access rules): inside
    /// MULTI the transaction then fails at EXEC, as for any command refused while queued.
    pub fn refused(&mut self) {
        if self.queued.is_some() {
            self.dirty = true;
        }
    }

    /// Handles a request [`Transaction::takes`]; the reply to queue for it. The commands run
    /// on node connections in `lane`'s protocol, so the node's EXEC reply is the client's.
    ///
    /// `tracking`: the client's `CLIENT TRACKING` and whether `CLIENT CACHING` was given, when
    /// tracking is on (EXEC's reads are then tracked as outside a transaction).
    pub fn handle(
        &mut self,
        router: &Arc<Router>,
        lane: Lane,
        request: Request,
        tracking: Option<(Arc<Tracker>, bool)>,
    ) -> Pending {
        let name = request
            .args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .unwrap_or_default();
        let in_multi = self.queued.is_some();
        let arity_ok = |n: usize| request.args.len() == n;
        match (name.as_str(), in_multi) {
            ("multi", true) => {
                Pending::ready(Reply::error_static("ERR MULTI calls can not be nested"))
            }
            ("multi", false) if arity_ok(1) => {
                self.queued = Some(Vec::new());
                self.queued_bytes = 0;
                self.dirty = false;
                Pending::ready(Reply::ok())
            }
            ("exec", false) if arity_ok(1) => {
                Pending::ready(Reply::error_static("ERR EXEC without MULTI"))
            }
            ("discard", false) if arity_ok(1) => {
                Pending::ready(Reply::error_static("ERR DISCARD without MULTI"))
            }
            ("exec", true) if arity_ok(1) => self.exec(router, lane, tracking),
            ("discard", true) if arity_ok(1) => {
                self.queued = None;
                self.unwatch(Reply::ok())
            }
            ("watch", true) => {
                Pending::ready(Reply::error_static("ERR WATCH inside MULTI is not allowed"))
            }
            ("watch", false) if request.args.len() >= 2 => self.watch(router, lane, request),
            ("unwatch", false) if arity_ok(1) => self.unwatch(Reply::ok()),
            (_, true) => self.queue(request),
            (name, false) => Pending::ready(crate::command::classify::wrong_arity(name)),
        }
    }

    /// Queues a command after MULTI, checked as Redis checks it.
    fn queue(&mut self, request: Request) -> Pending {
        let spec = match classify(&request, true) {
            Ok(spec) => spec,
            Err(reply) => {
                self.dirty = true;
                return Pending::ready(reply);
            }
        };
        let allowed = matches!(
            spec.route,
            Route::SameNode | Route::Split(_) | Route::Blocking | Route::AnyNode
        ) || matches!(spec.name, "ping" | "echo" | "time");
        if !allowed {
            self.dirty = true;
            return Pending::ready(Reply::error(format!(
                "ERR strata: '{}' is not supported inside MULTI",
                spec.name
            )));
        }
        if let Some(queued) = self.queued.as_mut() {
            self.queued_bytes += request.args.iter().map(|a| a.len()).sum::<usize>();
            queued.push((spec, request));
        }
        Pending::ready(Reply::status("QUEUED"))
    }

    /// WATCH key [key ...]: every key on one node (and on the node of a WATCH in force).
    fn watch(&mut self, router: &Arc<Router>, lane: Lane, request: Request) -> Pending {
        let Some(spec) = crate::command::table::lookup(b"watch") else {
            return Pending::ready(Reply::error_static("ERR strata: internal error: no WATCH"));
        };
        let node = match plan::same_node(&router.view(), lane, spec, &request) {
            Ok(node) => node,
            Err(reply) => return Pending::ready(reply),
        };
        if self.watched.is_some_and(|w| w != node) {
            return Pending::ready(Reply::error_static(CROSSSLOT));
        }
        self.watched = Some(node);
        let watch = self.watch.clone();
        let router = router.clone();
        let payload = plan::payload(&request);
        Pending::Dedicated(Box::pin(async move {
            let mut held = watch.lock().await;
            let reply = async {
                if held.is_none() {
                    *held = Some(router.dedicated_lease(node, lane.proto).await?);
                }
                let w = held
                    .as_mut()
                    .ok_or_else(|| strata_error("no watch connection"))?;
                let reply = w.call(&payload).await.map_err(strata_error)?;
                w.hold_state();
                Ok::<_, Reply>(Reply::Raw(reply.raw))
            }
            .await;
            let reply = reply.unwrap_or_else(|e| {
                *held = None;
                e
            });
            output(reply)
        }))
    }

    /// Ends a WATCH in force (UNWATCH on its connection, which goes back to the pool); `reply`
    /// is what the client gets.
    fn unwatch(&mut self, reply: Reply) -> Pending {
        if self.watched.take().is_none() {
            return Pending::ready(reply);
        }
        let watch = self.watch.clone();
        Pending::Dedicated(Box::pin(async move {
            if let Some(mut w) = watch.lock().await.take() {
                // On failure the lease is dropped and the connection closed: the watch ends.
                let _ = w.call(b"*1\r\n$7\r\nUNWATCH\r\n").await;
            }
            output(reply)
        }))
    }

    /// EXEC: the queued commands as one MULTI ... EXEC block on their node.
    fn exec(
        &mut self,
        router: &Arc<Router>,
        lane: Lane,
        tracking: Option<(Arc<Tracker>, bool)>,
    ) -> Pending {
        // Planned with one view, as any request.
        let view = router.view_full();
        let queued = self.queued.take().unwrap_or_default();
        if std::mem::take(&mut self.dirty) {
            return self.unwatch(Reply::error_static(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        let node = match common_node(&view, &queued) {
            Ok(Some(node)) => Some(node),
            Ok(None) => None,
            Err(reply) => return self.unwatch(reply),
        };
        let node = match (node, self.watched) {
            (Some(a), Some(b)) if a != b => return self.unwatch(Reply::error_static(CROSSSLOT)),
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => view.topology.pick(lane.client),
        };
        self.watched = None;
        // The block: MULTI, each command (TTL policy applied), EXEC; then the TTL followers,
        // outside the transaction.
        let mut block = Vec::new();
        block.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        let mut followers = Vec::new();
        let mut writes = Vec::new();
        // The near cache forgets the block's writes, and coalesced reads stop joining flights
        // sent before them, before the block is sent and again before the client has EXEC's
        // reply (read-your-writes, as for a write outside a transaction).
        let near: Vec<plan::WriteEffect> = if view.layers.watch_writes() {
            queued
                .iter()
                .map(|(spec, request)| plan::before_write(&view, spec, request, lane.client))
                .filter(|e| !e.is_none())
                .collect()
        } else {
            Vec::new()
        };
        let coherence = view.layers.coherence().clone();
        // A tracking client's reads in the block: remembered when EXEC's reply is in, and
        // told at once of any a change overtook (as a read outside a transaction).
        let tracked: Vec<_> = match tracking {
            Some((tracker, caching)) => queued
                .iter()
                .filter_map(|(spec, request)| {
                    tracked_read(&view.layers, tracker.clone(), caching, spec, request)
                })
                .collect(),
            None => Vec::new(),
        };
        for (spec, request) in &queued {
            let (payload, follow) = rewrite(&view, spec, request);
            block.extend_from_slice(&payload);
            if !spec.has(crate::command::spec::flags::READONLY) {
                writes.push(payload);
            }
            followers.extend(follow);
        }
        block.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        let count = queued.len() + 2;
        let watch = self.watch.clone();
        let replicas = replicas(&view, &queued, node);
        drop(view);
        let router = router.clone();
        Pending::Dedicated(Box::pin(async move {
            let held = watch.lock().await.take();
            let reply = async {
                let mut lease = match held {
                    Some(w) => w,
                    None => router.dedicated_lease(node, lane.proto).await?,
                };
                let mut replies = lease.call_many(&block, count).await.map_err(strata_error)?;
                let exec = replies.pop().ok_or_else(|| strata_error("no EXEC reply"))?;
                let ran = matches!(
                    exec.frame,
                    redis_protocol::resp2::types::BytesFrame::Array(_)
                );
                if ran {
                    for f in &followers {
                        let _ = lease.call(f).await;
                    }
                    if !replicas.is_empty() && !writes.is_empty() {
                        replicate(&router, replicas, writes);
                    }
                }
                Ok::<_, Reply>(Reply::Raw(exec.raw))
            }
            .await;
            // Whether the block ran or failed on the way, what it may have written is
            // forgotten before the client has the reply.
            for effect in &near {
                effect.apply_after(&coherence, lane.client);
            }
            for read in tracked {
                read.finish(&coherence);
            }
            output(reply.unwrap_or_else(|e| e))
        }))
    }
}

fn output(reply: Reply) -> TaskOutput {
    TaskOutput {
        reply,
        applied: Vec::new(),
    }
}

fn strata_error(reason: impl std::fmt::Display) -> Reply {
    Reply::error(format!("ERR strata: {reason}"))
}

/// The node every key of the transaction is on; `None` when it names no key.
fn common_node(
    view: &View,
    queued: &[(&'static CommandSpec, Request)],
) -> Result<Option<usize>, Reply> {
    let mut place: Option<crate::cluster::Place> = None;
    let mut positions = Vec::new();
    for (spec, request) in queued {
        key_positions(spec, &request.args, &mut positions)
            .map_err(|e| plan::key_error(spec.name, e))?;
        for &p in &positions {
            let Some(key) = request.args.get(p) else {
                continue;
            };
            // One ring node, or one slot of one Redis Cluster (as the cluster requires).
            let here = view.place(key);
            match place {
                None => place = Some(here),
                Some(p) if !p.together(here) => return Err(Reply::error_static(CROSSSLOT)),
                Some(_) => {}
            }
        }
    }
    place.map(|p| plan::node_of(view, p)).transpose()
}

/// The command's bytes after the layers' TTL policy, and its TTL followers.
fn rewrite(view: &View, spec: &'static CommandSpec, request: &Request) -> (Bytes, Vec<Bytes>) {
    let index = crate::command::table::command_index(spec);
    let traits = track::traits(index);
    let mut track = Track::new(std::time::Instant::now());
    track.layer = request.args.get(1).map(|k| view.layers.resolve(k));
    match plan::write_payload(view, spec, request, traits.ttl_rule, &mut track) {
        Ok((payload, followers)) => (
            payload,
            followers
                .iter()
                .map(|f| command_bytes(f.iter().map(|a| a.as_ref())))
                .collect(),
        ),
        // A refused write is sent as it is: the node's error reply is the answer.
        Err(_) => (plan::payload(request), Vec::new()),
    }
}

/// The other replicas of the transaction's keys (by the first key's layer), when it has more
/// than one copy.
fn replicas(view: &View, queued: &[(&'static CommandSpec, Request)], node: usize) -> Vec<usize> {
    let mut positions = Vec::new();
    let first = queued.iter().find_map(|(spec, request)| {
        key_positions(spec, &request.args, &mut positions).ok()?;
        positions
            .first()
            .and_then(|&p| request.args.get(p).cloned())
    });
    let Some(key) = first else {
        return Vec::new();
    };
    let layers = &view.layers;
    let Some(layer) = layers.get(layers.resolve(&key)) else {
        return Vec::new();
    };
    if layer.spec.replication < 2 {
        return Vec::new();
    }
    view.replicas_of(&layer.spec, &key)
        .into_iter()
        .filter(|&n| n != node)
        .collect()
}

/// Sends the transaction's writes to the other replicas as a MULTI/EXEC block each, in the
/// background (a replica that fails is left to read repair).
fn replicate(router: &Arc<Router>, replicas: Vec<usize>, writes: Vec<Bytes>) {
    let router = router.clone();
    tokio::spawn(async move {
        let mut block = Vec::new();
        block.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        for w in &writes {
            block.extend_from_slice(w);
        }
        block.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        for node in replicas {
            match router
                .dedicated_lease(node, crate::protocol::Proto::Resp2)
                .await
            {
                Ok(mut l) => {
                    if let Err(e) = l.call_many(&block, writes.len() + 2).await {
                        tracing::debug!(node, reason = %e, "transaction not replicated");
                    }
                }
                Err(_) => tracing::debug!(node, "transaction not replicated: no connection"),
            }
        }
    });
}
