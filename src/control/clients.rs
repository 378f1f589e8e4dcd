//! The clients connected to this strata process, for CLIENT LIST / CLIENT INFO / INFO clients.
//!
//! Registration happens once per connection, and the per-request bookkeeping is a few relaxed
//! atomic stores done once per read, so the registry stays off the hot path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client_tracking::{Inbox, Tracker};

/// What strata knows about one client connection.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    /// Milliseconds since `created` of the last request.
    last_active_ms: AtomicU64,
    /// Index of the last command in the command table, plus one (0 = none yet).
    last_command: AtomicUsize,
    names: Mutex<Names>,
    /// Bumped each time the client's user changes (AUTH, HELLO AUTH, RESET), so a session can
    /// keep its resolved permissions until then.
    user_epoch: AtomicU64,
    /// RESP version the client speaks (2, or 3 after `HELLO 3`).
    proto: std::sync::atomic::AtomicU8,
    /// Set by CLIENT KILL: the session closes the connection.
    killed: crate::latch::Latch,
    /// The session's state as CLIENT LIST shows it, stored by the session as it changes.
    pub state: SessionState,
    /// Invalidation messages waiting for this client (its own tracking, or another client's
    /// that redirects to it).
    pub inbox: Arc<Inbox>,
    /// Its `CLIENT TRACKING`, when on; `tracking_on` is read first, without the lock, by
    /// every request.
    tracking: Mutex<Option<Arc<Tracker>>>,
    tracking_on: AtomicBool,
    /// `CLIENT CACHING YES|NO` was given for the next command.
    caching: AtomicBool,
}

#[derive(Debug, Default, Clone)]
struct Names {
    name: String,
    /// The user the client is authenticated as; `None` until it authenticates when the
    /// default user needs a password.
    user: Option<Arc<str>>,
    /// The subcommand of the last command when it has subcommands (`client|list`).
    last_subcommand: String,
}

/// A session's figures for CLIENT LIST / CLIENT INFO (relaxed atomics: a snapshot, not a
/// transaction).
#[derive(Debug, Default)]
pub struct SessionState {
    /// Channels, patterns and shard channels subscribed.
    pub sub: AtomicUsize,
    pub psub: AtomicUsize,
    pub ssub: AtomicUsize,
    /// Commands queued after MULTI, or -1 outside MULTI.
    pub multi: std::sync::atomic::AtomicI64,
    /// Bytes read and not parsed yet, and the read buffer's size.
    pub qbuf: AtomicUsize,
    pub qbuf_capacity: AtomicUsize,
    /// Bytes of replies waiting for the socket; of them, those in the buffer small replies are
    /// encoded into (`obl`), and how many large replies are queued whole (`oll`).
    pub omem: AtomicUsize,
    pub obl: AtomicUsize,
    pub oll: AtomicUsize,
    /// Bytes of the requests queued after MULTI.
    pub multi_mem: AtomicUsize,
    /// The session waits on a blocking command (BLPOP ..., XREAD BLOCK): flag `b`, and INFO's
    /// `blocked_clients`.
    pub blocked: std::sync::atomic::AtomicBool,
    /// The socket's file descriptor.
    pub fd: std::sync::atomic::AtomicI64,
}

impl ClientInfo {
    pub fn proto(&self) -> u8 {
        self.proto.load(Ordering::Relaxed)
    }

    /// The node connections this client's requests take now (its protocol may change with
    /// HELLO).
    pub fn lane(&self) -> crate::backend::Lane {
        crate::backend::Lane {
            client: self.id,
            proto: crate::protocol::Proto::from_version(self.proto()),
        }
    }

    pub fn set_proto(&self, proto: u8) {
        self.proto.store(proto, Ordering::Relaxed);
    }

    /// CLIENT KILL: the session closes the connection at once.
    pub fn kill(&self) {
        self.killed.set();
    }

    /// Completes once the client is killed; the session keeps it across its passes.
    /// Whether `CLIENT TRACKING` is on (one atomic load).
    #[inline]
    pub fn is_tracking(&self) -> bool {
        self.tracking_on.load(Ordering::Relaxed)
    }

    pub fn tracker(&self) -> Option<Arc<Tracker>> {
        self.tracking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Turns tracking on with `tracker`, or off.
    pub fn set_tracker(&self, tracker: Option<Arc<Tracker>>) {
        let mut t = self
            .tracking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.tracking_on.store(tracker.is_some(), Ordering::Relaxed);
        *t = tracker;
        if t.is_none() {
            self.caching.store(false, Ordering::Relaxed);
        }
    }

    /// `CLIENT CACHING YES|NO` given (for the next command).
    pub fn set_caching(&self) {
        self.caching.store(true, Ordering::Relaxed);
    }

    pub fn caching(&self) -> bool {
        self.caching.load(Ordering::Relaxed)
    }

    /// A command other than `CLIENT ...` ran outside MULTI: `CLIENT CACHING` applied to it.
    pub fn clear_caching(&self) {
        if self.caching.load(Ordering::Relaxed) {
            self.caching.store(false, Ordering::Relaxed);
        }
    }

    pub fn killed(&self) -> crate::latch::Watch<'_> {
        self.killed.watch()
    }

    pub fn touch(&self, command: Option<usize>) {
        self.mark_active(Instant::now());
        self.set_last_command(command);
    }

    /// Records the client's last command (CLIENT LIST's `cmd=`); the session marks the
    /// activity itself ([`ClientInfo::mark_active`]) with a time it read anyway.
    pub fn set_last_command(&self, command: Option<usize>) {
        if let Some(i) = command {
            self.last_command.store(i + 1, Ordering::Relaxed);
        }
    }

    /// Records traffic either way at `at` (a time the session read anyway): what CLIENT LIST's
    /// `idle` and `limits.idle_timeout` measure from, as Redis's `lastinteraction`.
    pub fn mark_active(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.created).as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last request or traffic.
    fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.created)
            .saturating_sub(Duration::from_millis(
                self.last_active_ms.load(Ordering::Relaxed),
            ))
    }

    /// Whether `limits.idle_timeout` may close this client: as in Redis's
    /// `clientsCronHandleTimeout` (7.0, src/timeout.c), not while it waits on a blocking
    /// command nor while it is subscribed; a client inside MULTI is not exempt.
    fn times_out(&self, timeout: Duration, now: Instant) -> bool {
        !self.state.blocked.load(Ordering::Relaxed)
            && !self.is_subscribed()
            && !self.killed.is_set()
            && self.idle(now) > timeout
    }

    pub fn name(&self) -> String {
        self.names
            .lock()
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// The user the client runs as, `None` while it has not authenticated.
    pub fn user(&self) -> Option<Arc<str>> {
        self.names.lock().ok().and_then(|n| n.user.clone())
    }

    /// Sets the client's user (`None`: not authenticated).
    pub fn set_user(&self, user: Option<Arc<str>>) {
        if let Ok(mut n) = self.names.lock() {
            n.user = user;
        }
        self.user_epoch.fetch_add(1, Ordering::Release);
    }

    /// Changes each time the user changes.
    pub fn user_epoch(&self) -> u64 {
        self.user_epoch.load(Ordering::Acquire)
    }

    pub fn set_name(&self, name: &str) {
        if let Ok(mut n) = self.names.lock() {
            n.name = name.to_string();
        }
    }

    /// Records the subcommand of a command that has subcommands (CLIENT LIST's `cmd=`).
    pub fn set_subcommand(&self, sub: &[u8]) {
        if let Ok(mut n) = self.names.lock() {
            n.last_subcommand = String::from_utf8_lossy(sub).to_ascii_lowercase();
        }
    }

    /// Whether the client is subscribed to anything (CLIENT LIST TYPE pubsub).
    pub fn is_subscribed(&self) -> bool {
        let s = &self.state;
        s.sub.load(Ordering::Relaxed)
            + s.psub.load(Ordering::Relaxed)
            + s.ssub.load(Ordering::Relaxed)
            > 0
    }

    /// One CLIENT LIST line (without the newline), with Redis 7.0's fields. `argv-mem` is 0:
    /// strata holds no request's arguments between reading and dispatching it.
    pub fn describe(&self, command_name: impl Fn(usize) -> &'static str) -> String {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let age = self.created.elapsed().as_secs();
        let idle_ms = (self.created.elapsed().as_millis() as u64)
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let cmd = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL".to_string(),
            i => {
                let name = command_name(i - 1);
                if crate::command::spec::has_subcommands(name) && !names.last_subcommand.is_empty()
                {
                    format!("{name}|{}", names.last_subcommand)
                } else {
                    name.to_string()
                }
            }
        };
        // Redis shows `default` for a client that has not authenticated yet.
        let user = names.user.as_deref().unwrap_or("default");
        let s = &self.state;
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let multi = s.multi.load(Ordering::Relaxed);
        let mut flags = String::new();
        if s.blocked.load(Ordering::Relaxed) {
            flags.push('b');
        }
        if self.is_subscribed() {
            flags.push('P');
        }
        if multi >= 0 {
            flags.push('x');
        }
        let tracker = self.tracker();
        if let Some(t) = &tracker {
            flags.push('t');
            if t.options.redirect != 0 && t.redirect_broken() {
                flags.push('R');
            }
            if t.options.bcast {
                flags.push('B');
            }
        }
        let redir = tracker.map_or(-1, |t| t.options.redirect as i64);
        if flags.is_empty() {
            flags.push('N');
        }
        let (qbuf, qbuf_cap, omem) = (load(&s.qbuf), load(&s.qbuf_capacity), load(&s.omem));
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db=0 sub={} psub={} ssub={} multi={multi} qbuf={qbuf} qbuf-free={} argv-mem=0 multi-mem={} rbs={qbuf_cap} rbp={qbuf} obl={} oll={} omem={omem} tot-mem={} events={} cmd={cmd} user={user} redir={redir} resp={}",
            self.id,
            self.addr,
            self.laddr,
            s.fd.load(Ordering::Relaxed),
            names.name,
            age,
            idle_ms / 1000,
            load(&s.sub),
            load(&s.psub),
            load(&s.ssub),
            qbuf_cap.saturating_sub(qbuf),
            load(&s.multi_mem),
            load(&s.obl),
            load(&s.oll),
            qbuf_cap + omem + load(&s.multi_mem),
            if omem > 0 { "rw" } else { "r" },
            self.proto(),
        )
    }
}

/// Every connected client, by id.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

impl ClientRegistry {
    /// Registers a new connection and returns its record; ids start at 1 and never repeat.
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicUsize::new(0),
            names: Mutex::new(Names::default()),
            user_epoch: AtomicU64::new(0),
            proto: std::sync::atomic::AtomicU8::new(2),
            killed: crate::latch::Latch::default(),
            state: SessionState {
                multi: std::sync::atomic::AtomicI64::new(-1),
                fd: std::sync::atomic::AtomicI64::new(-1),
                ..SessionState::default()
            },
            inbox: Arc::default(),
            tracking: Mutex::new(None),
            tracking_on: AtomicBool::new(false),
            caching: AtomicBool::new(false),
        });
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(id, info.clone());
        }
        info
    }

    pub fn unregister(&self, id: u64) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&id);
        }
    }

    pub fn count(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Clients whose session waits on a blocking command (INFO's `blocked_clients`); a client
    /// that goes away leaves the registry, and the count, with its session.
    pub fn blocked(&self) -> usize {
        self.clients
            .lock()
            .map(|c| {
                c.values()
                    .filter(|i| i.state.blocked.load(Ordering::Relaxed))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The clients `limits.idle_timeout` closes now.
    fn idle_past(&self, timeout: Duration, now: Instant) -> Vec<Arc<ClientInfo>> {
        self.clients
            .lock()
            .map(|c| {
                c.values()
                    .filter(|i| i.times_out(timeout, now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A snapshot, ordered by id.
    /// The client with this id, if connected.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.clients.lock().ok()?.get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.clients
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Closes the clients idle past `limits.idle_timeout` (Redis's `timeout`), as Redis's
/// `clientsCron` does: one pass over the registry about once a second (a quarter of the
/// timeout when that is shorter), the setting read on every pass so a reload applies to open
/// connections. A pass rather than a timer per session: idle sessions then cost no timer, and
/// busy ones no timer reset per request.
pub async fn close_idle(control: Arc<super::Control>) {
    loop {
        let timeout = control.live.load().settings.config.limits.idle_timeout;
        let period = if timeout.is_zero() {
            Duration::from_secs(1)
        } else {
            (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
        };
        tokio::time::sleep(period).await;
        // Read again: the setting may have changed during the sleep.
        let timeout = control.live.load().settings.config.limits.idle_timeout;
        if timeout.is_zero() {
            continue;
        }
        for client in control.clients.idle_past(timeout, Instant::now()) {
            control
                .stats
                .idle_timeout_disconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client.addr = %client.addr, conn.id = client.id, "closing idle client (limits.idle_timeout)");
            client.kill();
        }
    }
}

/// Removes a client from the registry when its session ends, however it ends.
pub struct Registration {
    pub info: Arc<ClientInfo>,
    registry: Arc<super::Control>,
}

impl Registration {
    pub fn new(control: &Arc<super::Control>, addr: SocketAddr, laddr: SocketAddr) -> Self {
        let info = control.clients.register(addr, laddr);
        // Without a password for the default user, a new client runs as it at once.
        let acl = control.live.load().acl.clone();
        if !acl.auth_required() {
            info.set_user(Some(acl.default_user().name.clone()));
        }
        Registration {
            info,
            registry: control.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Clients redirecting here find the redirect broken; this one's tracking ends.
        self.info.inbox.close();
        if self.info.is_tracking() {
            self.registry
                .live
                .load()
                .layers
                .coherence()
                .clients
                .disable(self.info.id);
        }
        self.registry.clients.unregister(self.info.id);
        self.registry
            .connected
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
