//! One client connection: read, parse every request in the buffer, dispatch them all at once,
//! and write the replies back in request order, batched into as few writes as possible.
//!
//! The session is a single task. It waits on three things at once: more bytes from the client
//! (while fewer than `limits.max_pipeline` requests wait for a node), the oldest pending reply,
//! and room in the socket for replies already encoded. When the oldest reply is ready, every
//! reply ready behind it is encoded in the same batch and written as far as the socket takes
//! it. Reading never waits for writing: a client that sends its whole pipeline before reading
//! a reply (redis-py's pipelines do) is served as Redis serves it, with the replies buffered
//! up to `limits.client_output_buffer_limit` and the client disconnected past it.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use arc_swap::Guard;
use bytes::BytesMut;
use tracing::Instrument;

use super::output::Output;
use super::output_limit::{Exceeded, OutputLimit};
use super::replies::{drain, drain_ready};
use super::stream::{ClientStream, Io};
use crate::cluster::View;
use crate::command::table::command_index;
use crate::command::table::lookup;
use crate::config::OutputBufferLimit;
use crate::control::clients::Registration;
use crate::control::Control;
use crate::coordinator::{Coordinator, Pending, Track};
use crate::protocol::{ParseLimits, Parsed, Reply, RequestParser};

/// Smallest free space offered to a read.
pub(super) const READ_SIZE: usize = 1024;
/// The smallest `client_query_buffer_limit` config accepts (below it no check is needed).
const MIN_QUERY_BUFFER_LIMIT: usize = crate::config::MIN_QUERY_BUFFER_LIMIT as usize;
/// The smallest non-zero `client_output_buffer_limit` config accepts.
const MIN_OUTPUT_BUFFER_LIMIT: usize = crate::config::MIN_OUTPUT_BUFFER_LIMIT as usize;
/// Largest read-ahead when a big bulk argument is arriving.
const MAX_READ_AHEAD: usize = 4 * 1024 * 1024;
/// Read-ahead a request's declared length can buy beyond the bytes the client has actually
/// sent: the buffer grows with what arrives (at most doubling, plus this), so a header such as
/// `$536870000` followed by nothing costs 64 KiB, not [`MAX_READ_AHEAD`], per connection, while
/// a value of up to 64 KiB still gets its whole read at once.
const DECLARED_READ_AHEAD: usize = 64 * 1024;

thread_local! {
    /// Sessions alive on this thread. A worker runs its sessions on a runtime of its own thread,
    /// so a session stays on the thread it started on.
    static SESSIONS_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Counts a session in [`SESSIONS_HERE`] while it lives.
struct Here;

impl Here {
    fn enter() -> Self {
        SESSIONS_HERE.with(|n| n.set(n.get() + 1));
        Here
    }

    /// No other session on this thread could have replies to send in the same burst.
    fn alone() -> bool {
        SESSIONS_HERE.with(|n| n.get() <= 1)
    }
}

impl Drop for Here {
    fn drop(&mut self) {
        SESSIONS_HERE.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Serves one client until it quits, errs or goes away.
pub async fn run(coord: Arc<Coordinator>, control: Arc<Control>, stream: ClientStream) {
    let (Ok(addr), Ok(laddr)) = (stream.tcp().peer_addr(), stream.tcp().local_addr()) else {
        control.connected.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    let registration = Registration::new(&control, addr, laddr);
    let span = tracing::debug_span!("client", client.addr = %addr, conn.id = registration.info.id);
    serve(&coord, &control, &registration, stream)
        .instrument(span)
        .await;
}

async fn serve(
    coord: &Arc<Coordinator>,
    control: &Arc<Control>,
    registration: &Registration,
    mut stream: ClientStream,
) {
    let client = &registration.info;
    tracing::debug!("connected");
    let _here = Here::enter();

    let settings = control.live.load().settings.clone();
    let limits = &settings.config.limits;
    let max_pipeline = limits.max_pipeline;
    let mut parser = RequestParser::new(ParseLimits {
        max_multibulk_len: limits.max_multibulk_len,
        max_bulk_len: limits.max_bulk_len,
        max_inline_len: limits.max_inline_len,
    });
    let stats = control.stats.workers.get(coord.router.worker);
    // Taken when bytes arrive and given back whenever nothing is in flight (`release`): an
    // idle client holds no buffer.
    let mut input = BytesMut::new();
    // Set when a burst grew the read buffer past its small size (given back once quiet).
    let mut input_grown = false;
    // Replies encoded and not yet taken by the socket: strata keeps reading requests while
    // they wait (a client may send its whole pipeline before it reads), bounded in bytes by
    // `limits.client_output_buffer_limit`.
    let mut output = Output::default();
    let mut output_limit = OutputLimit::default();
    // The client's output limit as last read (refreshed whenever the output is checked).
    let mut class = output_class(control, false);
    // What CLIENT LIST shows of this session.
    let state = &client.state;
    state
        .fd
        .store(i64::from(stream.tcp().as_raw_fd()), Ordering::Relaxed);
    let mut pending: VecDeque<(Pending, Track)> = VecDeque::new();
    // MULTI / EXEC / WATCH state (`transaction.rs`).
    let mut transaction = super::transaction::Transaction::default();
    // Subscriptions (`pubsub.rs`).
    let mut pubsub = super::pubsub::PubSub::default();
    // Who the client is and what it may do (`gate.rs`), and the rules of which view.
    let mut gate = super::gate::Gate::default();
    let mut acl: Option<Arc<crate::acl::Acl>> = None;
    let mut rules_generation = u64::MAX;
    // Set by QUIT or a protocol error: answer what was read, then close.
    let mut closing = false;
    // Bytes the request being parsed still needs (sizes the next read).
    let mut want = 0usize;
    let mut eof = false;
    // Bytes moved either way since the clock was last read (`limits.idle_timeout`).
    let mut active = false;
    // Requests were read in this pass (see the write below).
    let mut read_now = false;
    // One timer for the hedge time of the oldest pending reply (`Pending::hedge_at`): replies
    // behind it were sent later, so it is always the first due.
    let hedge = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(hedge);
    // Wakes the session when a client stays past the soft output limit.
    let soft_timer = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(soft_timer);
    // CLIENT KILL and the start of a drain, kept across passes: each registers once
    // (`latch::Watch`), where a new wait per pass cost a lock and a list insert and removal.
    let killed = client.killed();
    tokio::pin!(killed);
    let drain_begun = control.drain.begun();
    tokio::pin!(drain_begun);
    // The waker this session left in its inbox (`Inbox::poll_take`).
    let mut inbox_waker: Option<std::task::Waker> = None;

    // When the requests being parsed were read.
    let mut started = Instant::now();
    let cut_off = loop {
        // Parse and dispatch everything already buffered, up to the pipeline limit.
        let mut dispatched = 0u64;
        let mut last_spec = None;
        // One clock read for the batch: the requests in one read arrived together. None on a
        // pass with nothing to parse or mark (the one after a reply was written: one clock
        // read per request fewer).
        if active || !input.is_empty() {
            started = Instant::now();
        }
        // The access rules as they are now (a reload may change them; checked with one atomic
        // load); none to apply when no password or user is configured.
        let generation = coord.router.live().generation();
        if generation != rules_generation {
            let view = coord.router.view();
            acl = (!view.acl.is_open()).then(|| view.acl.clone());
            rules_generation = generation;
        }
        // The view this pass's requests are planned with and their replies counted in: loaded
        // once for the batch, not once per request and again per reply (an arc_swap load is
        // about 95 instructions), and again after any request that changed it (a reload, a
        // node added: the generation is read before each request). Dropped before the session
        // waits.
        let mut view: Option<Guard<Arc<View>>> = None;
        let mut view_generation = generation;
        while !closing && pending.len() < max_pipeline {
            let proto = client.lane().proto;
            // Redis's small request limits until the client authenticates.
            parser.set_unauthenticated(gate.unauthenticated(acl.as_ref(), client));
            let mut refusal = None;
            match parser.parse(&mut input) {
                // Transactions and pub/sub are checked here; other requests in `dispatch`,
                // once their command is looked up.
                Ok(Parsed::Request(request))
                    if acl.as_ref().is_some_and(|acl| {
                        (transaction.takes(&request) || pubsub.takes(&request, proto.is_resp3()))
                            && {
                                refusal = gate.check(acl, client, &request, &control.stats).err();
                                refusal.is_some()
                            }
                    }) =>
                {
                    // Inside MULTI a refused command fails the transaction, as in Redis.
                    if transaction.takes(&request) {
                        transaction.refused();
                    }
                    let reply = refusal
                        .take()
                        .unwrap_or_else(|| Reply::error_static(super::gate::NOAUTH));
                    pending.push_back((Pending::ready(reply), Track::in_proto(started, proto)));
                    dispatched += 1;
                }
                Ok(Parsed::Request(request)) if is_reset(&request) => {
                    // RESET: out of MULTI and WATCH, out of pub/sub, back to RESP2, no name.
                    transaction = super::transaction::Transaction::default();
                    pubsub = super::pubsub::PubSub::default();
                    for n in [&state.sub, &state.psub, &state.ssub, &state.multi_mem] {
                        n.store(0, Ordering::Relaxed);
                    }
                    state.multi.store(-1, Ordering::Relaxed);
                    client.set_proto(2);
                    client.set_name("");
                    // Tracking off, as Redis's RESET turns it off.
                    if client.is_tracking() {
                        client.set_tracker(None);
                        coord
                            .router
                            .view()
                            .layers
                            .coherence()
                            .clients
                            .disable(client.id);
                    }
                    // Back to the default user: authenticated only when it needs no password.
                    let rules = coord.router.view().acl.clone();
                    client.set_user(
                        (!rules.auth_required()).then(|| rules.default_user().name.clone()),
                    );
                    pending
                        .push_back((Pending::ready(Reply::status("RESET")), Track::new(started)));
                    dispatched += 1;
                }
                Ok(Parsed::Request(request)) if transaction.takes(&request) => {
                    last_spec = request.args.first().and_then(|n| lookup(n)).or(last_spec);
                    let tracking = client
                        .is_tracking()
                        .then(|| client.tracker().map(|t| (t, client.caching())))
                        .flatten();
                    let ends = request.args.first().is_some_and(|a| {
                        a.eq_ignore_ascii_case(b"exec") || a.eq_ignore_ascii_case(b"discard")
                    });
                    let reply = transaction.handle(&coord.router, client.lane(), request, tracking);
                    // CLIENT CACHING covers a whole MULTI ... EXEC block, as in Redis.
                    if ends {
                        client.clear_caching();
                    }
                    pending.push_back((reply, Track::in_proto(started, proto)));
                    dispatched += 1;
                    let (count, bytes) = transaction
                        .queued()
                        .map_or((-1, 0), |(n, b)| (i64::try_from(n).unwrap_or(i64::MAX), b));
                    state.multi.store(count, Ordering::Relaxed);
                    state.multi_mem.store(bytes, Ordering::Relaxed);
                }
                Ok(Parsed::Request(request)) if pubsub.takes(&request, proto.is_resp3()) => {
                    last_spec = request.args.first().and_then(|n| lookup(n)).or(last_spec);
                    let reply = pubsub.handle(&coord.router, request, proto.is_resp3());
                    pending.push_back((reply, Track::in_proto(started, proto)));
                    dispatched += 1;
                    let (sub, psub, ssub) = pubsub.counts();
                    state.sub.store(sub, Ordering::Relaxed);
                    state.psub.store(psub, Ordering::Relaxed);
                    state.ssub.store(ssub, Ordering::Relaxed);
                }
                Ok(Parsed::Request(request)) => {
                    let now = coord.router.live().generation();
                    if now != view_generation {
                        view = None;
                    }
                    let batch_view = view.get_or_insert_with(|| {
                        view_generation = now;
                        coord.router.view()
                    });
                    let done = super::dispatch::dispatch(
                        coord,
                        control,
                        client,
                        batch_view,
                        request,
                        started,
                        acl.as_ref().map(|acl| (acl, &mut gate)),
                    )
                    .await;
                    if done.spec.is_some() {
                        last_spec = done.spec;
                    }
                    pending.push_back((done.pending, done.track));
                    dispatched += 1;
                    closing = done.close;
                }
                Ok(Parsed::Incomplete { hint }) => {
                    want = hint;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "protocol error");
                    pending.push_back((
                        Pending::ready(Reply::Error(e.reply_text())),
                        Track::in_proto(started, proto),
                    ));
                    closing = true;
                }
            }
        }
        // Traffic either way since the last pass (`limits.idle_timeout`, CLIENT LIST's idle).
        if active || dispatched > 0 {
            client.mark_active(started);
            active = false;
        }
        if dispatched > 0 {
            client.set_last_command(last_spec.and_then(command_index));
            if let Some(s) = stats {
                s.commands.add(dispatched);
            }
        }
        // Replies known at once (a near-cache hit, a reply strata makes itself) are encoded
        // in this pass and written below, without a pass through the select: 10% of a
        // near-cache hit's instructions went to that pass.
        let drained_now = pending.front().is_some_and(|(p, _)| p.is_ready()) && {
            let cap = output_cap(&class);
            let worker = coord.router.worker;
            if coord.router.live().generation() != view_generation {
                view = None;
            }
            let batch_view = view.get_or_insert_with(|| coord.router.view());
            let drained = poll_fn(|cx| {
                Poll::Ready(drain(
                    &mut pending,
                    &mut output,
                    cap,
                    (batch_view, control, worker, client.id),
                    cx,
                ))
            })
            .await;
            if let Some(s) = stats {
                s.errors.add(drained.errors);
            }
            drained.written > 0
        };
        drop(view);
        if pending.is_empty() && output.is_empty() && (closing || eof) {
            break None;
        }
        // Bytes for the socket: replies encoded, or TLS records not yet taken.
        let unsent = !output.is_empty() || stream.has_unsent();

        // Shutting down: answer what was sent, then close. Clients blocked (BLPOP ...) or
        // subscribed would wait for ever: they are closed at once, as Redis does on shutdown.
        if !closing && control.drain.is_draining() {
            closing = true;
            let waits_for_ever = pubsub.active() || pending.iter().any(|(p, _)| p.is_dedicated());
            if (pending.is_empty() && output.is_empty()) || waits_for_ever {
                break None;
            }
        }
        // The query buffer holds at most one request still arriving (every complete one is
        // parsed above) unless the pipeline is full. Below the smallest limit the settings
        // need not be read.
        if input.len() > MIN_QUERY_BUFFER_LIMIT {
            let limit = control
                .live
                .load()
                .settings
                .config
                .limits
                .client_query_buffer_limit;
            if input.len() as u64 > limit.bytes() {
                break Some(Cut::Query(limit.bytes()));
            }
        }
        let can_read = !closing && !eof && pending.len() < max_pipeline;
        // A declared length is the client's claim: it sizes the read only as far as the bytes
        // already received vouch for it (reserved memory was found to become resident: 1-2 MB
        // per connection that sent nothing but a big bulk header).
        let room = want
            .min(input.len().saturating_add(DECLARED_READ_AHEAD))
            .clamp(READ_SIZE, MAX_READ_AHEAD);
        let quiet = input.is_empty() && pending.is_empty() && output.is_empty();
        if quiet {
            // Nothing in flight: buffers a burst grew go back to the allocator (the read
            // below takes a small one again once bytes are there). Small ones are kept: giving
            // them back at every pause cost a client sending one request at a time an
            // allocation and a free per request.
            output.release();
        }
        if quiet && input_grown {
            input = BytesMut::new();
            input_grown = false;
        } else if can_read && input.capacity() - input.len() < room {
            input_grown |= room > READ_SIZE || !input.is_empty();
            input.reserve(room);
        }
        let hedge_at = pending
            .front()
            .and_then(|(p, _)| p.hedge_at())
            .map(tokio::time::Instant::from_std);
        if let Some(at) = hedge_at {
            if hedge.deadline() != at {
                hedge.as_mut().reset(at);
            }
        }
        let soft_at = output_limit
            .soft_deadline(&class)
            .map(tokio::time::Instant::from_std);
        if let Some(at) = soft_at {
            if soft_timer.deadline() != at {
                soft_timer.as_mut().reset(at);
            }
        }
        // What CLIENT LIST and INFO's blocked_clients see while the session waits.
        state
            .blocked
            .store(pending.front().is_some_and(is_blocked), Ordering::Relaxed);
        let mut added = drained_now
            || tokio::select! {
                // Replies first: they free pipeline room and let the client make progress.
                biased;
                drained = drain_ready(&mut pending, &mut output, output_cap(&class), control, (coord.router.worker, client.id)), if !pending.is_empty() => {
                    if let Some(s) = stats {
                        s.errors.add(drained.errors);
                    }
                    true
                }
                // Polled readiness rather than writable(): it uses the socket's one waker slot
                // instead of registering a waiter in a locked list on every pass.
                io = poll_fn(|cx| stream.poll_io(cx, unsent, can_read.then_some((&mut input, room)))), if unsent || can_read => {
                    match io {
                        Io::Writable(Ok(())) => {}
                        Io::Writable(Err(_)) => break None,
                        Io::Read(Ok(0) | Err(_)) => eof = true,
                        Io::Read(Ok(n)) => {
                            active = true;
                            read_now = true;
                            if let Some(s) = stats {
                                s.net_input_bytes.add(n as u64);
                            }
                        }
                    }
                    false
                }
                Some(message) = pubsub.next_message(), if pubsub.active() => {
                    // Published messages go out between replies, with whatever else is waiting
                    // (as push frames to a RESP3 client).
                    let resp3 = client.lane().proto.is_resp3();
                    let mut add = |m: &[u8]| {
                        if resp3 {
                            crate::protocol::resp3::push(m, output.tail());
                        } else {
                            output.tail().extend_from_slice(m);
                        }
                    };
                    add(&message);
                    while let Some(more) = pubsub.try_message() {
                        add(&more);
                    }
                    true
                }
                // Invalidations for a tracking client (`client_tracking`), its own or another's
                // that redirects here.
                messages = poll_fn(|cx| client.inbox.poll_take(cx, &mut inbox_waker)) => {
                    encode_invalidations(&messages, client.lane().proto.is_resp3(), pubsub.active(), &mut output)
                }
                _ = &mut drain_begun, if !closing => false,
                _ = &mut killed => break None,
                _ = &mut hedge, if hedge_at.is_some() => {
                    if let Some((head, _)) = pending.front_mut() {
                        head.hedge();
                    }
                    false
                }
                _ = &mut soft_timer, if soft_at.is_some() => true,
            };
        // Invalidations waiting now go out behind the replies just encoded, in the same write:
        // one a reply caused (the client's own write) must reach the client with that reply,
        // as Redis writes them (`Inbox::take_ready`).
        if !output.is_empty() {
            if let Some(messages) = client.inbox.take_ready(&mut inbox_waker) {
                let resp3 = client.lane().proto.is_resp3();
                added |= encode_invalidations(&messages, resp3, pubsub.active(), &mut output);
            }
        }
        if added {
            if output.len() > MIN_OUTPUT_BUFFER_LIMIT {
                // Read each time: a reload applies to open connections.
                class = output_class(control, pubsub.active());
                if let Err(exceeded) = output_limit.check(output.len(), &class, Instant::now()) {
                    break Some(Cut::Output(exceeded));
                }
            } else {
                // Below every limit there can be.
                output_limit.clear();
            }
        }
        // Before the replies leave: a client that has a reply sees the state that follows it.
        state
            .blocked
            .store(pending.front().is_some_and(is_blocked), Ordering::Relaxed);
        // Write what the socket takes now; the rest waits for it to be writable again, while
        // requests keep being read.
        if !output.is_empty() {
            // Replies to requests just read wait until the worker's other ready sessions have
            // read and answered theirs: the replies then leave in a burst, as Redis writes its
            // clients' replies at the end of a loop pass. Written at once, each woke its client
            // alone (a loopback send wakes the reader): 0.85-0.9 of the throughput
            // (docs/architecture.md). A session alone on its worker skips the wait: it would
            // only cost a poll of the sockets (0.94 of a lone client's throughput).
            if std::mem::take(&mut read_now) && !Here::alone() {
                tokio::task::yield_now().await;
            }
            match output.flush(&mut stream) {
                Ok(written) => {
                    active |= written > 0;
                    if let Some(s) = stats {
                        s.net_output_bytes.add(written as u64);
                    }
                }
                Err(_) => break None,
            }
        }
        state.qbuf.store(input.len(), Ordering::Relaxed);
        state
            .qbuf_capacity
            .store(input.capacity(), Ordering::Relaxed);
        state.omem.store(output.len(), Ordering::Relaxed);
        state.obl.store(output.tail_len(), Ordering::Relaxed);
        state.oll.store(output.queued(), Ordering::Relaxed);
        if eof && pending.is_empty() && output.is_empty() && !closing {
            break None;
        }
        // Gone while blocked: dropping the pending commands closes their dedicated
        // connections, which releases the blocked commands on the nodes.
        if eof && pending.iter().any(|(p, _)| p.is_dedicated()) {
            break None;
        }
    };
    if let Some(cut) = cut_off {
        let counter = match cut {
            Cut::Output(_) => &control.stats.output_limit_disconnections,
            Cut::Query(_) => &control.stats.query_limit_disconnections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            client.addr = %client.addr,
            "client disconnected: {cut} (limits.{})",
            cut.setting()
        );
    }
    stream.shutdown().await;
    tracing::debug!("disconnected");
}

/// Why a client was disconnected by a limit.
enum Cut {
    Output(Exceeded),
    Query(u64),
}

impl Cut {
    fn setting(&self) -> &'static str {
        match self {
            Cut::Output(_) => "client_output_buffer_limit",
            Cut::Query(_) => "client_query_buffer_limit",
        }
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Output(e) => write!(f, "replies waiting past the output buffer {e}"),
            Cut::Query(limit) => write!(
                f,
                "unparsed input past the query buffer limit of {limit} bytes"
            ),
        }
    }
}

/// The output limit of the client's class now (settings read each time: a reload applies to
/// open connections).
fn output_class(control: &Control, subscribed: bool) -> OutputBufferLimit {
    let limits = control
        .live
        .load()
        .settings
        .config
        .limits
        .client_output_buffer_limit;
    if subscribed {
        limits.pubsub
    } else {
        limits.normal
    }
}

/// Encodes a tracking client's invalidation messages into `output` (a RESP3 push each, or a
/// message of the invalidation channel to a subscribed RESP2 client); false when none is for
/// this client.
fn encode_invalidations(
    messages: &VecDeque<crate::client_tracking::Message>,
    resp3: bool,
    subscribed: bool,
    output: &mut Output,
) -> bool {
    let mut any = false;
    for m in messages {
        any |= crate::client_tracking::inbox::encode(m, resp3, subscribed, output.tail());
    }
    any
}

/// The output size past which encoding more replies is pointless: the hard limit.
fn output_cap(limit: &OutputBufferLimit) -> usize {
    match usize::try_from(limit.hard.bytes()) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(hard) => hard,
    }
}

/// Whether a pending reply is a blocking command waiting on its node (BLPOP ..., XREAD BLOCK,
/// WAIT).
fn is_blocked((pending, track): &(Pending, Track)) -> bool {
    pending.is_dedicated()
        && track
            .command
            .and_then(|i| crate::command::table::COMMANDS.get(usize::from(i)))
            .is_some_and(|spec| {
                spec.has(crate::command::spec::flags::BLOCKING)
                    || spec.route == crate::command::spec::Route::Blocking
            })
}

fn is_reset(request: &crate::protocol::Request) -> bool {
    request.args.len() == 1
        && request
            .args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(b"reset"))
}
