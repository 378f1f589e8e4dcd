//! Test harness shared by the integration tests: real `redis-server` child processes, an
//! in-process strata server on top of them, and a tiny raw RESP client for exact-byte checks.
//!
//! Every test builds its own nodes and its own strata (free ports), so the tests of one file can
//! run in parallel threads. Nothing here sleeps to wait for a condition: readiness and recovery
//! are polled against a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod layers;
pub mod resp3;

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use strata::ring::Ring;
use strata::server::{Server, ServerHandle};

/// Default deadline for anything the tests wait on.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Poll interval while waiting on a condition.
pub const POLL_STEP: Duration = Duration::from_millis(20);
/// Read timeout of [`RawClient`]: a bug gives a failed read, never a hung test.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls `check` every [`POLL_STEP`] until it returns `Some`, or panics naming `what` once
/// `deadline` has passed.
pub fn poll_until<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL_STEP);
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Next candidate for a node port. Node ports are taken below the kernel's ephemeral range, so
/// the outgoing connections strata opens (whose local ports come from that range) can never
/// take the port of a node that is down and about to be restarted on it.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

/// A port nothing listens on right now (checked by binding it).
pub fn free_port() -> u16 {
    let high = ephemeral_low().clamp(12_000, 65_000);
    let low = 10_000u32;
    let span = high - low;
    // Start somewhere depending on the process, so two test binaries running at once do not walk
    // the same sequence.
    let _ = NEXT_PORT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7919) % span) + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = low + (n % span);
        if let Ok(port) = u16::try_from(port) {
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    // Fall back to whatever the kernel hands out.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// redis-server nodes
// ---------------------------------------------------------------------------------------------

/// One `redis-server` child process on 127.0.0.1, killed on drop.
pub struct RedisNode {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisNode {
    /// Starts a redis-server on a free port and waits until it answers PING.
    pub fn start() -> RedisNode {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        let mut last_error = String::new();
        for _ in 0..20 {
            let port = free_port();
            match spawn_redis(dir.path(), port) {
                Ok(child) => {
                    return RedisNode {
                        child: Some(child),
                        port,
                        dir,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// Starts `n` nodes.
    pub fn start_many(n: usize) -> Vec<RedisNode> {
        (0..n).map(|_| RedisNode::start()).collect()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id of the running redis-server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is not running").id()
    }

    /// SIGKILL, then reap the process: once this returns the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same port (empty: nothing is persisted) and waits until it
    /// answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let end = Instant::now() + DEADLINE;
        loop {
            match spawn_redis(self.dir.path(), self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() >= end => {
                    panic!("cannot restart redis-server on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(POLL_STEP),
            }
        }
    }

    /// Sends a signal to the process with the `kill` tool (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// A fresh connection of the `redis` crate straight to the node.
    pub fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to node");
        con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        con
    }

    /// GET straight on the node.
    pub fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET").arg(key).query(&mut self.conn()).unwrap()
    }

    /// EXISTS straight on the node.
    pub fn exists(&self, key: &str) -> bool {
        let n: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query(&mut self.conn())
            .unwrap();
        n == 1
    }

    /// DBSIZE straight on the node.
    pub fn dbsize(&self) -> i64 {
        redis::cmd("DBSIZE").query(&mut self.conn()).unwrap()
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns redis-server on `port` and waits until *this* process answers PING (checked by its
/// process id, so a server some other test started on the same port is never mistaken for it).
fn spawn_redis(dir: &Path, port: u16) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .args(["--logfile", "redis.log"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn redis-server (is it on PATH?): {e}"))?;
    let pid = child.id();
    let end = Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            return Err(format!(
                "redis-server on port {port} exited ({status}): {tail}"
            ));
        }
        if answers_as(port, pid) {
            return Ok(child);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server on port {port} not ready in {DEADLINE:?}"
            ));
        }
        std::thread::sleep(POLL_STEP);
    }
}

/// True when the server on `port` answers PING and INFO says it is process `pid`.
fn answers_as(port: u16, pid: u32) -> bool {
    let Ok(mut c) = RawClient::try_connect(&format!("127.0.0.1:{port}")) else {
        return false;
    };
    if c.try_call(&["PING"]) != Some(Resp::status("PONG")) {
        return false;
    }
    match c.try_call(&["INFO", "server"]) {
        Some(Resp::Bulk(text)) => String::from_utf8_lossy(&text)
            .lines()
            .any(|l| l.trim() == format!("process_id:{pid}")),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// strata in-process
// ---------------------------------------------------------------------------------------------

/// A strata server running in this process, shut down on drop.
pub struct Strata {
    handle: Option<ServerHandle>,
    pub yaml: String,
    /// The config file, for strata started with [`StrataBuilder::start_with_file`].
    pub file: Option<tempfile::TempDir>,
}

/// Builds the YAML of a test strata; top-level sections given to [`StrataBuilder::section`]
/// replace the defaults of the same name.
pub struct StrataBuilder {
    nodes: Vec<String>,
    sections: Vec<(String, String)>,
}

impl StrataBuilder {
    /// Defaults: 2 workers, dangerous commands allowed, short timeouts and backoffs.
    pub fn new(nodes: &[RedisNode]) -> StrataBuilder {
        StrataBuilder::with_addrs(nodes.iter().map(RedisNode::addr).collect())
    }

    /// Nodes given by address (`node1..nodeN` in this order).
    pub fn with_addrs(nodes: Vec<String>) -> StrataBuilder {
        let sections = [
            ("listen", "listen: 127.0.0.1:0"),
            ("workers", "workers: 2"),
            ("security", "security: {allow_dangerous_commands: true}"),
            ("timeouts", "timeouts: {connect: 500ms, request: 1s}"),
            (
                "backend",
                "backend: {reconnect_backoff_min: 20ms, reconnect_backoff_max: 200ms}",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        StrataBuilder { nodes, sections }
    }

    pub fn workers(self, n: usize) -> StrataBuilder {
        self.section(&format!("workers: {n}"))
    }

    /// Adds YAML: each top-level entry in `yaml` (a line starting at column 0 with `name:`)
    /// replaces the default entry of that name, or is appended.
    pub fn section(mut self, yaml: &str) -> StrataBuilder {
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in yaml.lines() {
            let top = !line.starts_with([' ', '\t']) && !line.trim().is_empty();
            match (top, entries.last_mut()) {
                (true, _) | (false, None) => {
                    let name = line.split(':').next().unwrap_or("").trim().to_string();
                    entries.push((name, line.to_string()));
                }
                (false, Some((_, text))) => {
                    text.push('\n');
                    text.push_str(line);
                }
            }
        }
        for (name, text) in entries {
            match self.sections.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = text,
                None => self.sections.push((name, text)),
            }
        }
        self
    }

    pub fn yaml(&self) -> String {
        let mut out = String::new();
        for (_, text) in &self.sections {
            out.push_str(text);
            out.push('\n');
        }
        out.push_str("nodes:\n");
        for (i, addr) in self.nodes.iter().enumerate() {
            out.push_str(&format!("  - {{id: node{}, addr: '{addr}'}}\n", i + 1));
        }
        out
    }

    pub fn start(self) -> Strata {
        let yaml = self.yaml();
        let settings = strata::config::Config::parse(&yaml, "test")
            .unwrap_or_else(|e| panic!("invalid test config: {e}\n{yaml}"));
        let server = Server::bind(settings, None).expect("bind strata");
        let handle = server.start().expect("start strata");
        Strata {
            handle: Some(handle),
            yaml,
            file: None,
        }
    }

    /// Starts strata from a config file (so STRATA RELOAD has one to read again); the file is
    /// [`Strata::config_path`].
    pub fn start_with_file(self) -> Strata {
        let yaml = self.yaml();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("strata.yaml");
        std::fs::write(&path, &yaml).expect("write config");
        let settings = strata::config::Config::load(&path)
            .unwrap_or_else(|e| panic!("invalid test config: {e}\n{yaml}"));
        let server = Server::bind(settings, Some(path)).expect("bind strata");
        let handle = server.start().expect("start strata");
        Strata {
            handle: Some(handle),
            yaml,
            file: Some(dir),
        }
    }
}

/// The `strata` binary as a process of its own, started by [`StrataBuilder::spawn`]: for what
/// an in-process server cannot show (signals, exit status, the process's memory). Killed on
/// drop.
pub struct StrataProcess {
    pub child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl StrataBuilder {
    /// Writes the config (listening on a free port) and starts the binary on it; returns once
    /// it accepts connections.
    pub fn spawn(self) -> StrataProcess {
        let port = free_port();
        let yaml = self.section(&format!("listen: 127.0.0.1:{port}")).yaml();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("strata.yaml");
        std::fs::write(&path, &yaml).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the strata binary");
        poll_until(DEADLINE, "strata to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        StrataProcess { child, port, dir }
    }
}

impl StrataProcess {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("strata.yaml")
    }

    pub fn client(&self) -> RawClient {
        RawClient::connect(&self.addr())
    }

    /// Sends signal `name` (TERM, HUP, ...) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        poll_until(within, "strata to exit", || self.child.try_wait().unwrap())
    }

    pub fn refuses_connections(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_err()
    }

    /// A `/proc/<pid>/status` memory field (VmRSS, VmHWM), in bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        kb * 1024
    }
}

impl Drop for StrataProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Strata {
    /// strata over `nodes` with the default test configuration.
    pub fn start(nodes: &[RedisNode]) -> Strata {
        StrataBuilder::new(nodes).start()
    }

    pub fn builder(nodes: &[RedisNode]) -> StrataBuilder {
        StrataBuilder::new(nodes)
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("strata is running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle().addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The ring as it is now (a copy: membership changes swap it).
    pub fn ring(&self) -> Ring {
        self.handle().shared.topology.load().ring.clone()
    }

    /// Index of the node that must hold `key`.
    pub fn owner(&self, key: &str) -> usize {
        self.ring().primary(key.as_bytes())
    }

    /// The config file of a strata started with [`StrataBuilder::start_with_file`].
    pub fn config_path(&self) -> std::path::PathBuf {
        self.file
            .as_ref()
            .expect("started with a config file")
            .path()
            .join("strata.yaml")
    }

    /// A raw client connected to strata.
    pub fn raw(&self) -> RawClient {
        RawClient::connect(&self.addr().to_string())
    }

    /// A `redis` crate connection to strata.
    pub fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr())).unwrap();
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to strata");
        con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        con
    }

    /// The first key of the form `{prefix}{n}` (n = 0, 1, ...) owned by node `node` and not in
    /// `taken`.
    pub fn key_on(&self, node: usize, prefix: &str, taken: &[String]) -> String {
        (0..100_000)
            .map(|n| format!("{prefix}{n}"))
            .find(|k| self.owner(k) == node && !taken.contains(k))
            .unwrap_or_else(|| panic!("no key with prefix {prefix:?} on node {node}"))
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw RESP client
// ---------------------------------------------------------------------------------------------

/// A parsed RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Resp {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`
    Nil,
    /// `*-1`
    NilArray,
    Array(Vec<Resp>),
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Status(s) => write!(f, "+{s}"),
            Resp::Error(s) => write!(f, "-{s}"),
            Resp::Int(n) => write!(f, ":{n}"),
            Resp::Bulk(b) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Resp::Nil => write!(f, "$-1"),
            Resp::NilArray => write!(f, "*-1"),
            Resp::Array(items) => f.debug_list().entries(items).finish(),
        }
    }
}

impl Resp {
    pub fn ok() -> Resp {
        Resp::Status("OK".into())
    }

    pub fn status(s: &str) -> Resp {
        Resp::Status(s.into())
    }

    pub fn err(s: &str) -> Resp {
        Resp::Error(s.into())
    }

    pub fn bulk(s: impl AsRef<[u8]>) -> Resp {
        Resp::Bulk(s.as_ref().to_vec())
    }

    /// An array of bulk strings.
    pub fn bulks<S: AsRef<[u8]>>(items: &[S]) -> Resp {
        Resp::Array(items.iter().map(Resp::bulk).collect())
    }

    /// The text of a bulk or status reply (panics otherwise).
    pub fn text(&self) -> String {
        match self {
            Resp::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            Resp::Status(s) => s.clone(),
            other => panic!("expected a bulk or status reply, got {other:?}"),
        }
    }

    /// The text of an error reply (panics otherwise).
    pub fn error_text(&self) -> String {
        match self {
            Resp::Error(e) => e.clone(),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    pub fn array(&self) -> &[Resp] {
        match self {
            Resp::Array(items) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Resp::Error(_))
    }

    /// The RESP2 encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Resp::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Resp::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Resp::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Resp::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Resp::Nil => out.extend_from_slice(b"$-1\r\n"),
            Resp::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Resp::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

/// Encodes a command as a RESP multibulk request.
pub fn encode_cmd<S: AsRef<[u8]>>(args: &[S]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A blocking RESP client over one TCP connection, with read timeouts.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        RawClient::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: &str) -> std::io::Result<RawClient> {
        let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// A second handle on the socket (for a writer thread).
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Sends a command as a multibulk request.
    pub fn send_cmd<S: AsRef<[u8]>>(&mut self, args: &[S]) {
        let bytes = encode_cmd(args);
        self.send(&bytes);
    }

    /// Sends a command and reads its reply.
    pub fn call<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Resp {
        self.send_cmd(args);
        self.read_reply()
    }

    /// Like [`RawClient::call`], `None` on any I/O or protocol failure.
    pub fn try_call<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Option<Resp> {
        let bytes = encode_cmd(args);
        self.stream.write_all(&bytes).ok()?;
        self.try_read_reply().ok()
    }

    /// Reads one reply; panics on timeout, close or malformed data.
    pub fn read_reply(&mut self) -> Resp {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    pub fn try_read_reply(&mut self) -> Result<Resp, String> {
        loop {
            match parse_resp(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => self.fill()?,
                Err(e) => {
                    return Err(format!(
                        "{e} in {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ))
                }
            }
        }
    }

    /// Reads the raw bytes of one reply, RESP2 or RESP3 (an attribute frame and the reply it
    /// annotates count as one), without interpreting them.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match resp3::reply_len(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => self.fill()?,
                Err(e) => {
                    return Err(format!(
                        "{e} in {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ))
                }
            }
        }
    }

    /// Takes the bytes read but not yet consumed by a reply (normally none).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads exactly `n` bytes (buffered ones first).
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill()
                .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
        }
        self.buf.drain(..n).collect()
    }

    /// Asserts the server closes the connection (EOF or reset) within the read timeout, without
    /// sending anything more.
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let end = Instant::now() + READ_TIMEOUT;
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected the connection to close, got {:?}",
                    String::from_utf8_lossy(&chunk[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("connection still open after {READ_TIMEOUT:?}: {e}"),
            }
            assert!(Instant::now() < end, "connection still open");
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("no reply within the read timeout ({e})"))
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

/// Parses one reply at the start of `buf`: `Ok(None)` when incomplete, else the reply and the
/// bytes it used.
pub fn parse_resp(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..nl]).map_err(|e| format!("bad line: {e}"))?;
    let after = nl + 2;
    let number = || -> Result<i64, String> {
        line.parse::<i64>()
            .map_err(|_| format!("bad number {line:?}"))
    };
    match buf.first() {
        Some(b'+') => Ok(Some((Resp::Status(line.to_string()), after))),
        Some(b'-') => Ok(Some((Resp::Error(line.to_string()), after))),
        Some(b':') => Ok(Some((Resp::Int(number()?), after))),
        Some(b'$') => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::Nil, after)));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            if &buf[after + n..after + n + 2] != b"\r\n" {
                return Err("bulk not followed by CRLF".into());
            }
            Ok(Some((
                Resp::Bulk(buf[after..after + n].to_vec()),
                after + n + 2,
            )))
        }
        Some(b'*') => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::NilArray, after)));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = after;
            for _ in 0..n {
                match parse_resp(&buf[pos..])? {
                    Some((item, used)) => {
                        items.push(item);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), pos)))
        }
        Some(&c) => Err(format!("unexpected reply type byte {:?}", c as char)),
        None => Ok(None),
    }
}

/// A deterministic permutation of `items` (an LCG-driven Fisher–Yates), so failures reproduce.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = ((state >> 33) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
