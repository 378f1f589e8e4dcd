//! `redis-server` child processes on free loopback ports, killed on drop.

use super::*;

/// One `redis-server` child process on 127.0.0.1, killed on drop.
pub struct RedisNode {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// `--requirepass`: the `default` user's password (`None`: no password).
    password: Option<String>,
    /// A TLS port beside the plain one, and the TLS arguments (`start_tls`).
    tls: Option<(u16, Vec<String>)>,
}

impl RedisNode {
    /// Starts a redis-server on a free port and waits until it answers PING.
    pub fn start() -> RedisNode {
        RedisNode::start_with(None)
    }

    /// Starts a redis-server whose `default` user needs `password` (`--requirepass`). The
    /// helpers below (`conn`, `get`, ...) authenticate with it.
    pub fn start_with_password(password: &str) -> RedisNode {
        RedisNode::start_with(Some(password.to_string()))
    }

    fn start_with(password: Option<String>) -> RedisNode {
        RedisNode::start_full(password, None)
    }

    /// Starts a redis-server that also listens with TLS (`--tls-port`, the certificates of
    /// `pki`; `auth_clients`: clients must present a certificate the CA signed). The plain port
    /// stays open for the helpers below; strata is given [`RedisNode::tls_addr`].
    pub fn start_tls(
        pki: &super::tls::Pki,
        password: Option<&str>,
        auth_clients: bool,
    ) -> RedisNode {
        let args = vec![
            "--tls-cert-file".to_string(),
            pki.p("server.crt"),
            "--tls-key-file".to_string(),
            pki.p("server.key"),
            "--tls-ca-cert-file".to_string(),
            pki.p("ca.crt"),
            "--tls-auth-clients".to_string(),
            if auth_clients { "yes" } else { "no" }.to_string(),
        ];
        RedisNode::start_full(password.map(str::to_string), Some(args))
    }

    fn start_full(password: Option<String>, tls_args: Option<Vec<String>>) -> RedisNode {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        let mut last_error = String::new();
        for _ in 0..20 {
            let port = free_port();
            let tls = tls_args.clone().map(|args| (free_port(), args));
            match spawn_redis(dir.path(), port, password.as_deref(), tls.as_ref()) {
                Ok(child) => {
                    return RedisNode {
                        child: Some(child),
                        port,
                        dir,
                        password,
                        tls,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// `127.0.0.1:<tls port>` of a node started with [`RedisNode::start_tls`].
    pub fn tls_addr(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("not a TLS node");
        format!("127.0.0.1:{port}")
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
            match spawn_redis(
                self.dir.path(),
                self.port,
                self.password.as_deref(),
                self.tls.as_ref(),
            ) {
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
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let client =
            redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", self.port)).unwrap();
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
fn spawn_redis(
    dir: &Path,
    port: u16,
    password: Option<&str>,
    tls: Option<&(u16, Vec<String>)>,
) -> Result<Child, String> {
    let mut command = Command::new("redis-server");
    if let Some(password) = password {
        command.args(["--requirepass", password]);
    }
    if let Some((tls_port, args)) = tls {
        command
            .args(["--tls-port", &tls_port.to_string()])
            .args(args);
    }
    let mut child = command
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
        if answers_as(port, pid, password) {
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
fn answers_as(port: u16, pid: u32, password: Option<&str>) -> bool {
    let Ok(mut c) = RawClient::try_connect(&format!("127.0.0.1:{port}")) else {
        return false;
    };
    if let Some(password) = password {
        if c.try_call(&["AUTH", password]) != Some(Resp::status("OK")) {
            return false;
        }
    }
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
