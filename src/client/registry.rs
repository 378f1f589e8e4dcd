//! The clients connected to this strata process, for CLIENT LIST / CLIENT INFO / INFO clients.
//!
//! Registration happens once per connection, and the per-request bookkeeping is two relaxed
//! atomic stores done once per read, so the registry stays off the hot path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// RESP version the client speaks (2, or 3 after `HELLO 3`).
    proto: std::sync::atomic::AtomicU8,
    /// Set by CLIENT KILL: the session closes the connection.
    killed: crate::latch::Latch,
}

#[derive(Debug, Default, Clone)]
struct Names {
    name: String,
    lib_name: String,
    lib_ver: String,
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

    /// Completes once the client is killed.
    pub async fn killed(&self) {
        self.killed.wait().await;
    }

    pub fn touch(&self, command: Option<usize>) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
        if let Some(i) = command {
            self.last_command.store(i + 1, Ordering::Relaxed);
        }
    }

    pub fn name(&self) -> String {
        self.names
            .lock()
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    pub fn set_name(&self, name: &str) {
        if let Ok(mut n) = self.names.lock() {
            n.name = name.to_string();
        }
    }

    pub fn set_lib(&self, lib_name: Option<&str>, lib_ver: Option<&str>) {
        if let Ok(mut n) = self.names.lock() {
            if let Some(v) = lib_name {
                n.lib_name = v.to_string();
            }
            if let Some(v) = lib_ver {
                n.lib_ver = v.to_string();
            }
        }
    }

    /// One CLIENT LIST line (without the newline), with Redis's field names.
    pub fn describe(&self, command_name: impl Fn(usize) -> &'static str) -> String {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let age = self.created.elapsed().as_secs();
        let idle_ms = (self.created.elapsed().as_millis() as u64)
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let cmd = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL",
            i => command_name(i - 1),
        };
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            names.name,
            age,
            idle_ms / 1000,
            cmd,
            self.proto(),
            names.lib_name,
            names.lib_ver,
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
            proto: std::sync::atomic::AtomicU8::new(2),
            killed: crate::latch::Latch::default(),
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

    /// A snapshot, ordered by id.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.clients
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Removes a client from the registry when its session ends, however it ends.
pub struct Registration {
    pub info: Arc<ClientInfo>,
    registry: Arc<crate::server::Shared>,
}

impl Registration {
    pub fn new(shared: &Arc<crate::server::Shared>, addr: SocketAddr, laddr: SocketAddr) -> Self {
        let info = shared.clients.register(addr, laddr);
        Registration {
            info,
            registry: shared.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.clients.unregister(self.info.id);
        self.registry
            .connected
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
