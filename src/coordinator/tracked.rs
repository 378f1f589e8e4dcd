//! A read by a client with `CLIENT TRACKING` on: which of its keys the client may cache, each
//! with a fill token taken before the request is sent, and, once the reply is in, the keys
//! remembered for the client (default mode) and the client told at once of any key a change
//! overtook (see `client_tracking`'s module doc: the fill race).

use std::sync::Arc;

use bytes::Bytes;

use crate::client_tracking::{TrackedKey, Tracker};
use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec, KeySpec};
use crate::near::{Coherence, FillToken};
use crate::policy::Layers;
use crate::protocol::Request;

/// A tracked read on its way (carried by the request's `Track`).
#[derive(Debug)]
pub struct TrackedRead {
    tracker: Arc<Tracker>,
    keys: Vec<TrackedKey<FillToken>>,
    /// Default mode: the keys go into the table (BCAST clients are told by prefix).
    remember: bool,
}

/// What `request` (read by the client of `tracker`) is to do for its tracking, if anything:
/// read-only commands only, and in OPTIN mode only after `CLIENT CACHING YES`, in OPTOUT mode
/// unless after `CLIENT CACHING NO` (`caching`), as Redis remembers keys.
pub fn tracked_read(
    layers: &Layers,
    tracker: Arc<Tracker>,
    caching: bool,
    spec: &CommandSpec,
    request: &Request,
) -> Option<Box<TrackedRead>> {
    // Read-only scripts are not tracked themselves in Redis (the commands they run are; a
    // script run through strata runs on a node, out of its sight).
    if !spec.has(flags::READONLY) || matches!(spec.name, "eval_ro" | "evalsha_ro" | "fcall_ro") {
        return None;
    }
    let o = &tracker.options;
    if !o.bcast && ((o.optin && !caching) || (o.optout && caching)) {
        return None;
    }
    let mut keys: Vec<Bytes> = Vec::new();
    if spec.keys == KeySpec::FIRST_ONLY {
        keys.extend(request.args.get(1).cloned());
    } else {
        let mut positions = Vec::new();
        if key_positions(spec, &request.args, &mut positions).is_err() {
            return None;
        }
        keys.extend(
            positions
                .iter()
                .filter_map(|&p| request.args.get(p))
                .cloned(),
        );
    }
    if o.bcast {
        keys.retain(|k| tracker.covers(k));
    }
    if keys.is_empty() {
        return None;
    }
    let coherence = layers.coherence();
    let keys = keys
        .into_iter()
        .map(|key| {
            let token = coherence.begin(&key);
            TrackedKey { key, token }
        })
        .collect();
    Some(Box::new(TrackedRead {
        remember: !tracker.options.bcast,
        tracker,
        keys,
    }))
}

impl TrackedRead {
    /// The reply is in (before the client has it): keys remembered first, then checked, so
    /// a change either finds the key in the table or shows in the token.
    pub fn finish(self, coherence: &Coherence) {
        let hub = &coherence.clients;
        if self.remember {
            for k in &self.keys {
                hub.remember(&self.tracker, &k.key);
            }
        }
        let covered = hub.covered();
        let overtaken: Vec<Bytes> = self
            .keys
            .into_iter()
            .filter(|k| !covered || coherence.changed(&k.token))
            .map(|k| k.key)
            .collect();
        hub.tell(&self.tracker, overtaken);
    }
}
