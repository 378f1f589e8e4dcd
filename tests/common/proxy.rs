//! strata for a test: in-process ([`Strata`], from a [`StrataBuilder`]) or as the binary in a
//! process of its own ([`StrataProcess`]).

use super::*;

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
    /// More fields of each node's entry (`password: x`), by node index.
    node_fields: Vec<(usize, String)>,
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
        StrataBuilder {
            nodes,
            node_fields: Vec::new(),
            sections,
        }
    }

    /// Adds fields to the entry of node `index` (0-based) in `nodes:`, e.g.
    /// `password: secret`.
    pub fn node_fields(mut self, index: usize, fields: &str) -> StrataBuilder {
        self.node_fields.push((index, fields.to_string()));
        self
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
        out.push_str(if self.nodes.is_empty() {
            "nodes: []\n"
        } else {
            "nodes:\n"
        });
        for (i, addr) in self.nodes.iter().enumerate() {
            let extra: String = self
                .node_fields
                .iter()
                .filter(|(n, _)| *n == i)
                .map(|(_, f)| format!(", {f}"))
                .collect();
            out.push_str(&format!(
                "  - {{id: node{}, addr: '{addr}'{extra}}}\n",
                i + 1
            ));
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
        // Its log (stderr) goes to a file, for tests that read it: [`StrataProcess::log`].
        let log = std::fs::File::create(dir.path().join("strata.log")).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
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

    /// What strata has logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("strata.log")).unwrap_or_default()
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
        self.handle().control.live.load().topology.ring.clone()
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
