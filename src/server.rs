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
use std::sync::Arc;
use std::thread::JoinHandle;

use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use crate::admin::AdminHandle;
use crate::backend::connection::LiveTimeouts;
use crate::backend::{ConnectionSettings, Pool, Router};
use crate::client::session;
use crate::client::stream::ClientStream;
use crate::cluster::topology::Topology;
use crate::cluster::{LiveView, NodeInfo, View};
use crate::command::table::COMMANDS;
use crate::config::Settings;
use crate::control::clients::ClientRegistry;
use crate::control::Control;
use crate::coordinator::Coordinator;
use crate::policy::Layers;
use crate::repair::Repairs;
use crate::stats::Stats;

/// A bound server, not yet running.
pub struct Server {
    listener: TcpListener,
    /// The TLS listener, when `tls` is set.
    tls_listener: Option<TcpListener>,
    /// The admin endpoint's listener, when `admin_listen` is set.
    admin: Option<TcpListener>,
    control: Arc<Control>,
}

/// A running server; dropping it does not stop it, [`ServerHandle::shutdown`] does.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// The TLS listener's address, when it runs.
    pub tls_addr: Option<SocketAddr>,
    /// The admin endpoint's address, when it runs.
    pub admin_addr: Option<SocketAddr>,
    pub control: Arc<Control>,
    admin: Option<AdminHandle>,
    stop: Arc<AtomicBool>,
    /// The plain listener's acceptor, then the TLS one's.
    acceptors: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// A connection accepted, on its way to a worker.
struct Incoming {
    stream: std::net::TcpStream,
    /// Accepted on `tls.listen`: the worker runs the TLS handshake first.
    tls: bool,
}

impl Server {
    /// Binds the listen address; the nodes are contacted once the server runs.
    pub fn bind(settings: Settings, config_path: Option<PathBuf>) -> std::io::Result<Server> {
        let listen = settings.config.listen;
        let listener = TcpListener::bind(listen)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listen {listen}: {e}")))?;
        let local_addr = listener.local_addr()?;
        let tls_listener = match &settings.config.tls {
            Some(tls) => Some(TcpListener::bind(tls.listen).map_err(|e| {
                std::io::Error::new(e.kind(), format!("tls.listen {}: {e}", tls.listen))
            })?),
            None => None,
        };
        let tls_addr = match &tls_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
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
                            &settings.config.repair,
                        )
                        .with_credentials(settings.config.credentials_for(&n.id))
                        .with_tls(settings.node_tls.get(&n.id).cloned()),
                )
            })
            .collect();
        for node in &nodes {
            crate::control::membership::warn_if_insecure(&node.id, node.tls().as_deref());
        }
        let workers = settings.workers;
        let layers = Layers::new(&settings.layers, workers);
        layers
            .coherence()
            .clients
            .configure(settings.config.client_tracking.limits());
        let most_copies = layers.iter().map(|(_, l)| l.spec.replication).max();
        let links = crate::cluster::slots::ClusterLink::of_backends(&settings.config.backends);
        let topology = Topology::new(
            nodes,
            settings.config.ring.vnodes,
            settings.hash_tag,
            most_copies.unwrap_or(1),
        )
        .with_clusters(links);
        let background_budget = settings.config.repair.max_in_flight;
        let timeouts = settings.config.timeouts.clone();
        let view = View {
            acl: Arc::new(crate::acl::Acl::new(
                &settings.config.security,
                &settings.layers,
            )),
            settings: Arc::new(settings),
            topology: Arc::new(topology),
            layers: Arc::new(layers),
        };
        let control = Arc::new(Control {
            live: Arc::new(LiveView::new(view)),
            rebalance: Arc::default(),
            drain: crate::control::shutdown::Drain::default(),
            reload_requests: tokio::sync::Notify::new(),
            timeouts: Arc::new(LiveTimeouts::new(timeouts.connect, timeouts.request)),
            clients: ClientRegistry::default(),
            connected: AtomicUsize::new(0),
            stats: Stats::new(workers, COMMANDS.len()),
            background: Arc::new(crate::repair::Background::new(background_budget)),
            coalesce: Arc::default(),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            local_addr,
            tls_addr,
            config_path,
        });
        Ok(Server {
            listener,
            tls_listener,
            admin,
            control,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.control.local_addr
    }

    /// Starts the workers and the acceptor in background threads.
    pub fn start(self) -> std::io::Result<ServerHandle> {
        let control = self.control;
        let admin = match self.admin {
            Some(listener) => Some(crate::admin::start(
                listener,
                crate::builtin::admin_endpoint::handler(control.clone()),
                crate::builtin::admin_endpoint::ADMIN_CONNECTIONS,
            )?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        let workers_wanted = control.live.load().settings.workers;
        for index in 0..workers_wanted {
            let (tx, rx) = mpsc::unbounded_channel::<Incoming>();
            senders.push(tx);
            let control = control.clone();
            let handle = std::thread::Builder::new()
                .name(format!("strata-worker-{index}"))
                .spawn(move || run_worker(index, control, rx))?;
            workers.push(handle);
        }
        let mut acceptors = Vec::new();
        let listeners =
            std::iter::once((self.listener, false)).chain(self.tls_listener.map(|l| (l, true)));
        for (listener, tls) in listeners {
            let control = control.clone();
            let stop = stop.clone();
            let senders = senders.clone();
            acceptors.push(
                std::thread::Builder::new()
                    .name(
                        if tls {
                            "strata-accept-tls"
                        } else {
                            "strata-accept"
                        }
                        .into(),
                    )
                    .spawn(move || accept_loop(listener, tls, control, senders, stop))?,
            );
        }
        tracing::info!(
            listen = %control.local_addr,
            workers = workers_wanted,
            nodes = control.live.load().topology.members.len(),
            "strata ready"
        );
        if let Some(addr) = control.tls_addr {
            let mutual = control
                .live
                .load()
                .settings
                .client_tls
                .as_ref()
                .is_some_and(|t| t.mutual);
            tracing::info!(tls_listen = %addr, client_certificates = mutual, "TLS listener ready");
        }
        if let Some(a) = &admin {
            tracing::info!(admin = %a.addr(), "admin endpoint ready (/metrics, /healthz)");
        }
        Ok(ServerHandle {
            addr: control.local_addr,
            tls_addr: control.tls_addr,
            admin_addr: admin.as_ref().map(|a| a.addr()),
            admin,
            control,
            stop,
            acceptors,
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
        self.wake_acceptors();
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Wakes the blocking accept() of each listener with a connection of our own.
    fn wake_acceptors(&self) {
        for addr in std::iter::once(self.addr).chain(self.tls_addr) {
            let _ = std::net::TcpStream::connect(addr);
        }
    }

    /// Starts a graceful shutdown: no new clients; each client gets the replies to what it
    /// sent and is closed; workers end once drained (`shutdown.rs`). [`ServerHandle::join`]
    /// waits for that.
    pub fn begin_drain(&self) {
        self.control.drain.begin();
        self.stop.store(true, Ordering::SeqCst);
        self.wake_acceptors();
    }

    /// Asks for a configuration reload (SIGHUP); the outcome is logged.
    pub fn request_reload(&self) {
        self.control.reload_requests.notify_one();
    }

    /// Waits for the acceptor and the workers to end (after [`ServerHandle::begin_drain`]),
    /// then stops the admin endpoint.
    pub fn join(mut self) {
        for a in self.acceptors.drain(..) {
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
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn run_worker(
    index: usize,
    control: Arc<Control>,
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
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
    // Worker 0 starts the thread the invalidation streams are read on, and stops it when it
    // ends (after the drain).
    let streams = if index == 0 {
        match crate::tracking::StreamThread::start() {
            Ok(t) => {
                let coherence = control.live.load().layers.coherence().clone();
                coherence.set_streams_runtime(t.handle());
                Some(t)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the streams thread; worker 0 reads the invalidation streams");
                None
            }
        }
    } else {
        None
    };
    runtime.block_on(async move {
        let view = control.live.load_full();
        let config = &view.settings.config;
        // Redis Cluster redirects of this worker's connections, followed by its follower.
        let (redirects, redirected) = tokio::sync::mpsc::channel(crate::backend::redirect::QUEUE);
        let conn_settings = ConnectionSettings {
            timeouts: control.timeouts.clone(),
            backoff_min: config.backend.reconnect_backoff_min,
            backoff_max: config.backend.reconnect_backoff_max,
            queue_depth: config.backend.queue_depth,
            max_in_flight: config.backend.max_in_flight,
            worker: index,
            redirects: Some(redirects),
        };
        let pool = Pool::start(
            &view.topology.nodes,
            config.limits.max_nodes,
            config.backend.connections_per_node,
            &conn_settings,
        );
        drop(view);
        let router = Arc::new(Router::new(
            index,
            control.live.clone(),
            pool,
            control.timeouts.clone(),
        ));
        let coord = Arc::new(Coordinator {
            router: router.clone(),
            repairs: Repairs {
                tails: Arc::default(),
                background: control.background.clone(),
            },
            rebalance: control.rebalance.clone(),
            coalesce: control.coalesce.clone(),
        });
        tokio::spawn(coord.repairs.tails.clone().watch());
        tokio::spawn(crate::backend::redirect::Follower::serve(
            router.clone(),
            redirected,
        ));
        if index == 0 {
            crate::control::slot_maps::start(&control, &router);
            tokio::spawn(sample_rates(control.clone()));
            tokio::spawn(crate::control::layer_keys::run(coord.clone()));
            crate::health::heartbeat::start(&router);
            crate::tracking::start(&router);
            tokio::spawn(reload_on_request(control.clone(), router.clone()));
            tokio::spawn(crate::control::clients::close_idle(control.clone()));
            tokio::spawn(crate::control::refill::watch(control.clone()));
        }
        while let Some(Incoming { stream, tls }) = incoming.recv().await {
            let _ = stream.set_nonblocking(true);
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) if tls => {
                    tokio::spawn(tls_session(coord.clone(), control.clone(), stream));
                }
                Ok(stream) => {
                    tokio::spawn(session::run(
                        coord.clone(),
                        control.clone(),
                        ClientStream::Plain(stream),
                    ));
                }
                Err(e) => {
                    control.connected.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot register client socket");
                }
            }
        }
        // No more clients: when draining, let the open ones and background work finish.
        if control.drain.is_draining() {
            control.drain.settle(&control).await;
        }
    });
    drop(streams);
    // Dropping the runtime cancels every session and node connection of this worker.
}

/// The TLS handshake with a client of `tls.listen` (with the certificate as last loaded: a
/// reload applies to the handshakes after it), then its session. A failed or slow handshake
/// closes the connection; it is counted, and logged at debug level only (port scanners and
/// health probes fail handshakes all day).
async fn tls_session(
    coord: Arc<Coordinator>,
    control: Arc<Control>,
    stream: tokio::net::TcpStream,
) {
    let (acceptor, timeout) = {
        let view = control.live.load();
        let timeout = view
            .settings
            .config
            .tls
            .as_ref()
            .map(|t| t.handshake_timeout);
        (view.settings.client_tls.clone(), timeout)
    };
    let peer = stream.peer_addr().ok();
    let outcome = match (acceptor, timeout) {
        (Some(acceptor), Some(timeout)) => {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Ok(tls),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no handshake within {}",
                    humantime::format_duration(timeout)
                )),
            }
        }
        _ => Err("TLS is not configured".to_string()),
    };
    match outcome {
        Ok(tls) => {
            control
                .stats
                .tls_connections_received
                .fetch_add(1, Ordering::Relaxed);
            session::run(coord, control, ClientStream::Tls(Box::new(tls))).await;
        }
        Err(reason) => {
            control
                .stats
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            control.connected.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(client.addr = ?peer, %reason, "TLS handshake failed");
        }
    }
}

/// Feeds INFO's instantaneous rates (`stats::instant`) a sample every 100 ms.
async fn sample_rates(control: Arc<Control>) {
    let mut every = tokio::time::interval(crate::stats::instant::SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let t = control.stats.totals();
        control.stats.instantaneous.sample(
            Instant::now(),
            [t.commands, t.net_input_bytes, t.net_output_bytes],
        );
    }
}

/// Reloads the configuration each time SIGHUP asks (see [`ServerHandle::request_reload`]).
async fn reload_on_request(control: Arc<Control>, router: Arc<Router>) {
    loop {
        control.reload_requests.notified().await;
        if let Err(reason) = crate::control::reload::reload(&control, &router) {
            tracing::error!(%reason, "reload refused: running configuration kept");
        }
    }
}

/// Accepts on one listener (`tls`: the TLS one) and hands the connections to the workers in
/// turn.
fn accept_loop(
    listener: TcpListener,
    tls: bool,
    control: Arc<Control>,
    workers: Vec<mpsc::UnboundedSender<Incoming>>,
    stop: Arc<AtomicBool>,
) {
    let max_clients = control.live.load().settings.config.limits.max_clients;
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
        if control.connected.load(Ordering::Relaxed) >= max_clients {
            control
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            // Redis's own answer, then close.
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
            continue;
        }
        // Redis counts a connection received once it is accepted as a client.
        control
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        control.connected.fetch_add(1, Ordering::Relaxed);
        let Some(worker) = workers.get(next % workers.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        if worker.send(Incoming { stream, tls }).is_err() {
            control.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
