//! A session's replies on their way out: the pending replies that are ready, in request
//! order, encoded into the client's output in its protocol and counted in the statistics
//! (a near-cache write's second invalidation applied first).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::Poll;

use super::output::Output;
use crate::cluster::View;
use crate::control::Control;
use crate::coordinator::{Pending, Recorder, Track};
use crate::protocol::{Proto, Reply};

/// What one drain wrote.
pub(super) struct Drained {
    /// Replies encoded.
    pub written: u64,
    /// Error replies strata produced itself (counted in INFO).
    pub errors: u64,
}

/// Waits until the oldest pending reply is ready, then encodes it and every reply ready right
/// behind it (see [`drain`]).
pub(super) async fn drain_ready(
    pending: &mut VecDeque<(Pending, Track)>,
    output: &mut Output,
    cap: usize,
    control: &Control,
    (worker, client): (usize, u64),
) -> Drained {
    poll_fn(|cx| {
        let view = control.live.load();
        let drained = drain(pending, output, cap, (&view, control, worker, client), cx);
        if drained.written > 0 {
            Poll::Ready(drained)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Encodes the oldest pending reply and every reply ready right behind it into `output`, as
/// far as they are ready now (stopping once `output` holds more than `cap` bytes: the client
/// is about to be cut off), counting each in the statistics. The first reply not ready keeps
/// `cx`'s waker.
pub(super) fn drain(
    pending: &mut VecDeque<(Pending, Track)>,
    output: &mut Output,
    cap: usize,
    (view, control, worker, client): (&View, &Control, usize, u64),
    cx: &mut std::task::Context<'_>,
) -> Drained {
    let stats = control.stats.workers.get(worker);
    let mut written = 0;
    let mut errors = 0;
    let layers = &view.layers;
    let mut recorder: Option<Recorder<'_>> = None;
    while let Some((head, track)) = pending.front_mut() {
        if output.len() > cap {
            break;
        }
        match head.poll_reply(cx) {
            Poll::Ready(reply) => {
                if let Some(effect) = track.near_after.take() {
                    // Before the client has the reply: it then reads its own write, and
                    // tracking clients are told of it.
                    effect.apply_after(layers.coherence(), client);
                }
                if let Some(read) = track.tracked.take() {
                    read.finish(layers.coherence());
                }
                if matches!(reply, Reply::Error(_)) {
                    errors += 1;
                }
                recorder
                    .get_or_insert_with(|| Recorder::new(worker, stats, layers))
                    .record(track, &reply, head.applied());
                match (&reply, track.proto) {
                    // A node's reply, in the client's protocol already.
                    (Reply::Raw(raw), _) => output.push_raw(raw),
                    (_, Proto::Resp3) => {
                        crate::protocol::resp3::encode(&reply, track.shape, output.tail())
                    }
                    (_, Proto::Resp2) => reply.encode(output.tail()),
                }
                pending.pop_front();
                written += 1;
            }
            Poll::Pending => break,
        }
    }
    Drained { written, errors }
}
