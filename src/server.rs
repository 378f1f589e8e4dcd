//! The listener and the worker threads.
//!
//! strata runs one event loop per worker thread (a current-thread tokio runtime), each with its
//! own backend connections: a client and the node connections serving it live on the same
//! thread, so a request and its reply never cross threads. An acceptor thread hands new
//! connections to the workers in turn and enforces `limits.max_clients`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use crate::admin::{AdminHandle, HttpResponse};
use crate::backend::{ConnectionSettings, Pool};
use crate::client::session;
use crate::cluster::topology::Topology;
use crate::cluster::NodeInfo;
use crate::command::table::COMMANDS;
use crate::config::Settings;
use crate::control::clients::ClientRegistry;
use crate::policy::Layers;
use crate::stats::Stats;

/// State shared by every worker.
pub struct Shared {
    /// The running configuration; swapped whole by a reload (`reload.rs`).
    pub settings: ArcSwap<Settings>,
    /// Nodes, members and ring; swapped whole by membership changes (`topology.rs`).
    pub topology: ArcSwap<Topology>,
    /// Held while a membership change builds and swaps a new topology (one at a time).
    pub membership: Mutex<()>,
    /// Key layers: policy and statistics; swapped whole by a reload (statistics carried over
    /// by layer name).
    pub layers: ArcSwap<Layers>,
    pub clients: ClientRegistry,
    /// Client connections open right now (enforces `limits.max_clients`).
    pub connected: AtomicUsize,
    pub stats: Stats,
    /// `timeouts.connect` / `timeouts.request` as every node connection reads them.
    pub timeouts: Arc<crate::backend::connection::LiveTimeouts>,
    /// SIGHUP: asks worker 0 to reload the configuration (`reload.rs`).
    pub reload_requests: tokio::sync::Notify,
    /// Graceful shutdown in progress (`shutdown.rs`).
    pub drain: crate::control::shutdown::Drain,
    /// Moving keys after membership changes (`STRATA REBALANCE`).
    pub rebalance: crate::control::rebalance::Rebalance,
    /// Budget and figures of background convergence work (write tails, repairs).
    pub background: Arc<crate::repair::Background>,
    pub started: Instant,
    pub started_wall: SystemTime,
    /// The address actually bound (differs from the config with port 0).
    pub local_addr: SocketAddr,
    pub config_path: Option<PathBuf>,
}

/// What one worker's tasks share: the process state plus this worker's node connections.
pub struct Worker {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub pool: Pool,
    /// Idle dedicated connections (blocking commands).
    pub dedicated: Arc<crate::backend::dedicated::DedicatedPool>,
    /// Replicated writes' replies not waited for (`repair::tails`).
    pub tails: Arc<crate::repair::tails::Tails>,
}

impl Worker {
    /// A dedicated connection to the node in `slot`, speaking `proto` (`backend::dedicated`);
    /// the error reply
    /// when the node is unknown, marked down, unreachable or at `limits.max_dedicated_per_node`.
    pub async fn dedicated_lease(
        &self,
        slot: usize,
        proto: crate::protocol::Proto,
    ) -> Result<crate::backend::dedicated::Lease, crate::protocol::Reply> {
        use crate::protocol::Reply;
        let Some(node) = self.shared.topology.load().node(slot).cloned() else {
            return Err(Reply::error_static("ERR strata: no such node"));
        };
        if node.health.is_down() {
            return Err(Reply::error(node.down_error().to_string()));
        }
        let max = self
            .shared
            .settings
            .load()
            .config
            .limits
            .max_dedicated_per_node;
        self.dedicated
            .lease(&node, proto, max, self.shared.timeouts.connect())
            .await
            .map_err(|e| Reply::error(format!("ERR strata: {e}")))
    }

    /// The connection `lane` takes to the node in `slot` (opened on first use for nodes added
    /// after start, and for RESP3); `None` for an unknown slot.
    pub fn connection(
        &self,
        slot: usize,
        lane: crate::backend::Lane,
    ) -> Option<&crate::backend::Connection> {
        self.pool.connection(slot, lane, || {
            self.shared.topology.load().node(slot).cloned()
        })
    }
}

/// A bound server, not yet running.
pub struct Server {
    listener: TcpListener,
    /// The admin endpoint's listener, when `admin_listen` is set.
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// A running server; dropping it does not stop it, [`ServerHandle::shutdown`] does.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// The admin endpoint's address, when it runs.
    pub admin_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    admin: Option<AdminHandle>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Shared {
    /// Runs `f` on worker `worker`'s figures of layer `layer` (in the layers as they are now;
    /// a layer gone by a reload counts nothing).
    pub fn layer_figures(
        &self,
        layer: crate::policy::LayerId,
        worker: usize,
        f: impl FnOnce(&crate::stats::LayerWorker),
    ) {
        if let Some(w) = self
            .layers
            .load()
            .get(layer)
            .and_then(|l| l.stats.worker(worker))
        {
            f(w);
        }
    }

    /// CONFIG RESETSTAT: every statistic strata keeps (not the key counts, which are gauges).
    pub fn reset_stats(&self) {
        self.stats.reset();
        self.layers.load().reset_stats();
        for node in self.topology.load().nodes.iter() {
            node.stats.reset();
            node.hints.reset();
        }
    }
}

impl Server {
    /// Binds the listen address; the nodes are contacted once the server runs.
    pub fn bind(settings: Settings, config_path: Option<PathBuf>) -> std::io::Result<Server> {
        let listen = settings.config.listen;
        let listener = TcpListener::bind(listen)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listen {listen}: {e}")))?;
        let local_addr = listener.local_addr()?;
        let admin =
            match settings.config.admin_listen {
                Some(addr) => Some(TcpListener::bind(addr).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("admin_listen {addr}: {e}"))
                })?),
                None => None,
            };
        let nodes: Vec<Arc<NodeInfo>> = settings
            .config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Arc::new(
                    NodeInfo::new(i, n.id.clone(), n.addr.clone(), n.weight, settings.workers)
                        .configured(
                            crate::cluster::health::Thresholds::from(&settings.config.health),
                            settings.config.repair.max_hints_per_node,
                        ),
                )
            })
            .collect();
        let workers = settings.workers;
        let layers = Layers::new(&settings.layers, workers);
        let most_copies = layers.iter().map(|(_, l)| l.spec.replication).max();
        let topology = Topology::new(
            nodes,
            settings.config.ring.vnodes,
            settings.hash_tag,
            most_copies.unwrap_or(1),
        );
        let background_budget = settings.config.repair.max_in_flight;
        let timeouts = settings.config.timeouts.clone();
        let shared = Arc::new(Shared {
            settings: ArcSwap::from_pointee(settings),
            topology: ArcSwap::from_pointee(topology),
            membership: Mutex::new(()),
            rebalance: crate::control::rebalance::Rebalance::default(),
            drain: crate::control::shutdown::Drain::default(),
            reload_requests: tokio::sync::Notify::new(),
            timeouts: Arc::new(crate::backend::connection::LiveTimeouts::new(
                timeouts.connect,
                timeouts.request,
            )),
            layers: ArcSwap::from_pointee(layers),
            clients: ClientRegistry::default(),
            connected: AtomicUsize::new(0),
            stats: Stats::new(workers, COMMANDS.len()),
            background: Arc::new(crate::repair::Background::new(background_budget)),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            local_addr,
            config_path,
        });
        Ok(Server {
            listener,
            admin,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Starts the workers and the acceptor in background threads.
    pub fn start(self) -> std::io::Result<ServerHandle> {
        let shared = self.shared;
        let admin = match self.admin {
            Some(listener) => Some(crate::admin::start(
                listener,
                admin_handler(shared.clone()),
                ADMIN_CONNECTIONS,
            )?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for index in 0..shared.settings.load().workers {
            let (tx, rx) = mpsc::unbounded_channel::<std::net::TcpStream>();
            senders.push(tx);
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("strata-worker-{index}"))
                .spawn(move || run_worker(index, shared, rx))?;
            workers.push(handle);
        }
        let acceptor = {
            let shared = shared.clone();
            let stop = stop.clone();
            let listener = self.listener;
            std::thread::Builder::new()
                .name("strata-accept".into())
                .spawn(move || accept_loop(listener, shared, senders, stop))?
        };
        tracing::info!(
            listen = %shared.local_addr,
            workers = shared.settings.load().workers,
            nodes = shared.topology.load().members.len(),
            "strata ready"
        );
        if let Some(a) = &admin {
            tracing::info!(admin = %a.addr(), "admin endpoint ready (/metrics, /healthz)");
        }
        Ok(ServerHandle {
            addr: shared.local_addr,
            admin_addr: admin.as_ref().map(|a| a.addr()),
            admin,
            shared,
            stop,
            acceptor: Some(acceptor),
            workers,
        })
    }
}

impl ServerHandle {
    /// Stops accepting, closes every client and node connection, and joins the threads.
    pub fn shutdown(mut self) {
        if let Some(admin) = self.admin.take() {
            admin.shutdown();
        }
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Starts a graceful shutdown: no new clients; each client gets the replies to what it
    /// sent and is closed; workers end once drained (`shutdown.rs`). [`ServerHandle::join`]
    /// waits for that.
    pub fn begin_drain(&self) {
        self.shared.drain.begin();
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own.
        let _ = std::net::TcpStream::connect(self.addr);
    }

    /// Asks for a configuration reload (SIGHUP); the outcome is logged.
    pub fn request_reload(&self) {
        self.shared.reload_requests.notify_one();
    }

    /// Waits for the acceptor and the workers to end (after [`ServerHandle::begin_drain`]),
    /// then stops the admin endpoint.
    pub fn join(mut self) {
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(admin) = self.admin.take() {
            admin.shutdown();
        }
    }

    /// Blocks until the server stops (it runs until the process ends).
    pub fn wait(mut self) {
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Admin HTTP requests served at once; more wait in the backlog.
const ADMIN_CONNECTIONS: usize = 16;

/// What the admin endpoint answers: `/metrics` and `/healthz`.
fn admin_handler(shared: Arc<Shared>) -> crate::admin::Handler {
    let registry = crate::builtin::metrics::registry(shared.clone());
    Arc::new(move |path: &str| match path {
        "/metrics" => HttpResponse {
            status: 200,
            content_type: crate::builtin::metrics::CONTENT_TYPE,
            body: crate::builtin::metrics::render(&registry),
        },
        "/healthz" => health(&shared),
        _ => HttpResponse::text(404, "not found: try /metrics or /healthz\n"),
    })
}

/// `/healthz`: 200 `ok` when every node is up, 200 `degraded` naming the nodes that are not
/// (the keys of the others are served), 503 when no node is up (nothing can be served).
fn health(shared: &Shared) -> HttpResponse {
    if shared.drain.is_draining() {
        // Load balancers should stop sending clients here.
        return HttpResponse::text(503, "draining: shutting down\n");
    }
    let topology = shared.topology.load();
    let down: Vec<&str> = topology
        .member_nodes()
        .filter(|n| n.health.is_down())
        .map(|n| n.id.as_str())
        .collect();
    if down.is_empty() {
        HttpResponse::text(200, "ok\n")
    } else if down.len() < topology.members.len() {
        HttpResponse::text(200, format!("degraded: not up: {}\n", down.join(" ")))
    } else {
        HttpResponse::text(
            503,
            format!("unavailable: no node is up: {}\n", down.join(" ")),
        )
    }
}

fn run_worker(
    index: usize,
    shared: Arc<Shared>,
    mut incoming: mpsc::UnboundedReceiver<std::net::TcpStream>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot start worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let settings = shared.settings.load();
        let config = &settings.config;
        let conn_settings = ConnectionSettings {
            timeouts: shared.timeouts.clone(),
            backoff_min: config.backend.reconnect_backoff_min,
            backoff_max: config.backend.reconnect_backoff_max,
            queue_depth: config.backend.queue_depth,
            max_in_flight: config.backend.max_in_flight,
            worker: index,
        };
        let pool = Pool::start(
            &shared.topology.load().nodes,
            config.limits.max_nodes,
            config.backend.connections_per_node,
            &conn_settings,
        );
        let worker = Arc::new(Worker {
            index,
            shared: shared.clone(),
            pool,
            dedicated: Arc::default(),
            tails: Arc::default(),
        });
        tokio::spawn(worker.tails.clone().watch());
        if index == 0 {
            tokio::spawn(sample_rates(shared.clone()));
            tokio::spawn(crate::control::layer_keys::run(worker.clone()));
            crate::health::heartbeat::start(&worker);
            tokio::spawn(reload_on_request(worker.clone()));
        }
        while let Some(stream) = incoming.recv().await {
            let _ = stream.set_nonblocking(true);
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => {
                    tokio::spawn(session::run(worker.clone(), stream));
                }
                Err(e) => {
                    shared.connected.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot register client socket");
                }
            }
        }
        // No more clients: when draining, let the open ones and background work finish.
        if shared.drain.is_draining() {
            shared.drain.settle(&shared).await;
        }
    });
    // Dropping the runtime cancels every session and node connection of this worker.
}

/// Feeds INFO's instantaneous rates (`stats::instant`) a sample every 100 ms.
async fn sample_rates(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(crate::stats::instant::SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let t = shared.stats.totals();
        shared.stats.instantaneous.sample(
            Instant::now(),
            [t.commands, t.net_input_bytes, t.net_output_bytes],
        );
    }
}

/// Reloads the configuration each time SIGHUP asks (see [`ServerHandle::request_reload`]).
async fn reload_on_request(worker: Arc<Worker>) {
    loop {
        worker.shared.reload_requests.notified().await;
        if let Err(reason) = crate::control::reload::reload(&worker) {
            tracing::error!(%reason, "reload refused: running configuration kept");
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    stop: Arc<AtomicBool>,
) {
    let max_clients = shared.settings.load().config.limits.max_clients;
    let mut next = 0usize;
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if shared.connected.load(Ordering::Relaxed) >= max_clients {
            shared
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            // Redis's own answer, then close.
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
            continue;
        }
        // Redis counts a connection received once it is accepted as a client.
        shared
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let Some(worker) = workers.get(next % workers.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        if worker.send(stream).is_err() {
            shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
