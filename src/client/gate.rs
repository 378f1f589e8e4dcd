//! The access check every request passes before it runs, transactions and pub/sub included:
//! `NOAUTH` until the client authenticates (when the default user needs a password), `NOPERM`
//! for a command, key or channel its user may not use (`acl`). In Redis's order: an unknown
//! command or a wrong argument count is answered as such first.
//!
//! Without `security.requirepass` and `security.users` the check is one test per request. With
//! them, the session keeps its user's compiled rules until the user changes (AUTH, RESET) or a
//! reload brings new rules.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::acl::{denied_text, Acl, Denied, User};
use crate::command::spec::{flags, has_subcommands, CommandSpec};
use crate::command::table::lookup;
use crate::control::clients::ClientInfo;
use crate::protocol::{Reply, Request};
use crate::stats::Stats;

/// Redis's reply to a command before authentication.
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// A session's resolved user.
#[derive(Default)]
pub struct Gate {
    /// The rules and the client's user epoch `user` was resolved with.
    resolved: Option<(Arc<Acl>, u64)>,
    user: Option<Arc<User>>,
}

impl Gate {
    #[inline]
    /// Resolves the client's user under `acl` unless neither changed since the last time (one
    /// atomic load on the usual path). A user removed or disabled by a reload is as good as none.
    fn resolve(&mut self, acl: &Arc<Acl>, client: &ClientInfo) {
        let epoch = client.user_epoch();
        let current = matches!(&self.resolved, Some((a, e)) if Arc::ptr_eq(a, acl) && *e == epoch);
        if !current {
            self.user = client
                .user()
                .and_then(|n| acl.user(&n).cloned())
                .filter(|u| u.is_enabled());
            self.resolved = Some((acl.clone(), epoch));
        }
    }

    #[inline]
    /// Whether the client must still authenticate under `acl` (`None`: no rules).
    pub fn unauthenticated(&mut self, acl: Option<&Arc<Acl>>, client: &ClientInfo) -> bool {
        match acl {
            None => false,
            Some(acl) => {
                self.resolve(acl, client);
                self.user.is_none()
            }
        }
    }

    /// `Ok` when `request` may run; the refusal to reply otherwise (counted in `stats`). For
    /// requests the session handles itself (transactions, pub/sub); the others are checked
    /// with their command already looked up ([`Gate::check_spec`]).
    pub fn check(
        &mut self,
        acl: &Arc<Acl>,
        client: &ClientInfo,
        request: &Request,
        stats: &Stats,
    ) -> Result<(), Reply> {
        let name = request.args.first().map(|a| a.as_ref()).unwrap_or_default();
        let Some(spec) = lookup(name) else {
            // Unknown: the command's own error comes first, as in Redis.
            return Ok(());
        };
        if !spec.arity_ok(request.args.len()) {
            return Ok(());
        }
        self.check_spec(acl, client, spec, request, stats)
    }

    /// [`Gate::check`] for a request already found to be `spec` with the right arity.
    pub fn check_spec(
        &mut self,
        acl: &Arc<Acl>,
        client: &ClientInfo,
        spec: &'static CommandSpec,
        request: &Request,
        stats: &Stats,
    ) -> Result<(), Reply> {
        self.resolve(acl, client);
        let Some(user) = &self.user else {
            if spec.has(flags::NO_AUTH) {
                return Ok(());
            }
            return Err(Reply::error_static(NOAUTH));
        };
        match acl.check(user, spec, &request.args) {
            Ok(()) => Ok(()),
            Err(denied) => {
                let counter = match denied {
                    Denied::Command => &stats.acl_denied_cmd,
                    Denied::Key => &stats.acl_denied_key,
                    Denied::Channel => &stats.acl_denied_channel,
                };
                counter.fetch_add(1, Relaxed);
                let command = match request.args.get(1) {
                    Some(sub) if has_subcommands(spec.name) => format!(
                        "{}|{}",
                        spec.name,
                        String::from_utf8_lossy(sub).to_ascii_lowercase()
                    ),
                    _ => spec.name.to_string(),
                };
                tracing::debug!(client.addr = %client.addr, user = %user.name, command, ?denied, "refused by the access rules");
                Err(Reply::error(denied_text(denied, &user.name, &command)))
            }
        }
    }
}
