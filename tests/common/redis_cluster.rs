//! A real Redis Cluster for tests: `redis-server --cluster-enabled yes` processes on free
//! loopback ports (their cluster bus on port + 10000), joined with `redis-cli --cluster
//! create`, killed on drop. Helpers move slots (by hand, for `ASK`; or with `redis-cli
//! --cluster reshard`), fail over and kill nodes.

use super::*;

/// One cluster node's process.
pub struct ClusterNode {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl ClusterNode {
    fn start(node_timeout_ms: u64) -> ClusterNode {
        for _ in 0..40 {
            let port = free_port();
            // The cluster bus listens on port + 10000.
            if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let mut node = ClusterNode {
                child: None,
                port,
                dir: tempfile::tempdir().expect("tempdir for a cluster node"),
            };
            if node.spawn(node_timeout_ms).is_ok() {
                return node;
            }
        }
        panic!("cannot start a cluster node");
    }

    fn spawn(&mut self, node_timeout_ms: u64) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &node_timeout_ms.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err("redis-server exited".into());
            }
            if let Ok(mut c) = self.try_conn() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(POLL_STEP);
        }
        Err("redis-server did not answer".into())
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let c = client.get_connection_with_timeout(Duration::from_secs(2))?;
        c.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(c)
    }

    /// A connection straight to the node (no redirects followed).
    pub fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect to cluster node")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// This node's cluster id.
    pub fn id(&self) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.conn())
            .unwrap()
    }

    /// `master` or `slave`, from `ROLE`.
    pub fn role(&self) -> String {
        let v: redis::Value = redis::cmd("ROLE").query(&mut self.conn()).unwrap();
        match v {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("ROLE: {other:?}"),
            },
            other => panic!("ROLE: {other:?}"),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// GET on this node without following redirects: `Err` carries a `MOVED` / `ASK`.
    pub fn get(&self, key: &str) -> redis::RedisResult<Option<String>> {
        redis::cmd("GET").arg(key).query(&mut self.conn())
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a `redis-cli --cluster <what>` command to its end; panics with its output if it fails.
fn run_cli(what: &str, cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run redis-cli --cluster {what}: {e}"));
    assert!(
        out.status.success(),
        "redis-cli --cluster {what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running Redis Cluster.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
}

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, every slot assigned, the cluster
    /// `ok` on every node. `cluster-node-timeout` is 1 s, so a killed primary fails over in a
    /// few seconds.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        let count = primaries * (1 + replicas);
        let nodes: Vec<ClusterNode> = (0..count).map(|_| ClusterNode::start(1000)).collect();
        let cluster = RedisCluster { nodes };
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for n in &cluster.nodes {
            create.arg(n.addr());
        }
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        run_cli("create", &mut create);
        cluster.wait_settled(primaries * replicas);
        cluster
    }

    /// Every node's address (seeds for strata).
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    fn running(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// Waits until every running node says `cluster_state:ok`, they agree on the slot map,
    /// and `replicas` replicas are attached.
    pub fn wait_settled(&self, replicas: usize) {
        poll_until(Duration::from_secs(60), "the cluster to settle", || {
            let mut maps = Vec::new();
            for n in self.running() {
                let mut c = n.try_conn().ok()?;
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
                maps.push(self.slot_owners_of(n)?);
            }
            let same = maps.windows(2).all(|w| w.first() == w.get(1));
            let attached = self.running().filter(|n| n.role() == "slave").count();
            (same && attached >= replicas).then_some(())
        });
    }

    /// (start, end, primary port) of every slot range, sorted, as `node` reports them.
    fn slot_owners_of(&self, node: &ClusterNode) -> Option<Vec<(i64, i64, i64)>> {
        let mut c = node.try_conn().ok()?;
        let v: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).ok()?;
        let redis::Value::Array(ranges) = v else {
            return None;
        };
        let mut out = Vec::new();
        for r in ranges {
            let redis::Value::Array(parts) = r else {
                return None;
            };
            let int = |v: Option<&redis::Value>| match v {
                Some(redis::Value::Int(n)) => Some(*n),
                _ => None,
            };
            let port = match parts.get(2) {
                Some(redis::Value::Array(p)) => int(p.get(1))?,
                _ => return None,
            };
            out.push((int(parts.first())?, int(parts.get(1))?, port));
        }
        out.sort();
        Some(out)
    }

    /// Index in `nodes` of the node at `port`.
    pub fn index_of_port(&self, port: i64) -> usize {
        self.nodes
            .iter()
            .position(|n| i64::from(n.port) == port)
            .expect("a node of this cluster")
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let n = self.running().next().expect("a running node");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut n.conn())
            .unwrap()
    }

    /// Index of the primary serving `slot`, as the first running node reports.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        let n = self.running().next().expect("a running node");
        let map = self.slot_owners_of(n).expect("CLUSTER SLOTS");
        let (_, _, port) = map
            .into_iter()
            .find(|(s, e, _)| (*s..=*e).contains(&i64::from(slot)))
            .expect("slot served");
        self.index_of_port(port)
    }

    /// Index of the primary serving `key`.
    pub fn owner_of(&self, key: &str) -> usize {
        self.owner_of_slot(self.slot_of(key))
    }

    /// Indexes of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running() && self.nodes[i].role() == "master")
            .collect()
    }

    /// Index of a replica of the primary `primary`.
    pub fn replica_of(&self, primary: usize) -> usize {
        let id = self.nodes[primary].id();
        (0..self.nodes.len())
            .find(|&i| {
                let n = &self.nodes[i];
                if !n.is_running() || i == primary {
                    return false;
                }
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut n.conn())
                    .unwrap();
                let port = self.nodes[primary].port;
                info.contains(&format!("master_port:{port}")) && !id.is_empty()
            })
            .expect("a replica of the primary")
    }

    /// Starts moving `slot` from `from` to `to` (IMPORTING / MIGRATING) and migrates the keys
    /// in `keys` (of that slot) now: the rest stay on `from`, so reads of them there work and
    /// reads of the moved ones answer `ASK`.
    pub fn begin_migration(&self, slot: u16, from: usize, to: usize, keys: &[&str]) {
        let (from_id, to_id) = (self.nodes[from].id(), self.nodes[to].id());
        let _: String = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id)
            .query(&mut self.nodes[to].conn())
            .unwrap();
        let _: String = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id)
            .query(&mut self.nodes[from].conn())
            .unwrap();
        if !keys.is_empty() {
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(keys)
                .query(&mut self.nodes[from].conn())
                .unwrap();
        }
    }

    /// Finishes moving `slot` to `to`: the rest of its keys migrated, then every node told.
    pub fn finish_migration(&self, slot: u16, from: usize, to: usize) {
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut self.nodes[from].conn())
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut self.nodes[from].conn())
                .unwrap();
        }
        let to_id = self.nodes[to].id();
        for i in [to, from] {
            let _: String = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query(&mut self.nodes[i].conn())
                .unwrap();
        }
        poll_until(Duration::from_secs(30), "the slot move to spread", || {
            let all = self.running().all(|n| {
                self.slot_owners_of(n).is_some_and(|m| {
                    m.iter().any(|(s, e, p)| {
                        (*s..=*e).contains(&i64::from(slot)) && *p == i64::from(self.nodes[to].port)
                    })
                })
            });
            all.then_some(())
        });
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots from `from` to `to`, keys included,
    /// while clients run. Returns how long it took.
    pub fn reshard(&self, from: usize, to: usize, slots: usize) -> Duration {
        let started = Instant::now();
        let mut reshard = Command::new("redis-cli");
        reshard
            .args(["--cluster", "reshard", &self.nodes[from].addr()])
            .args(["--cluster-from", &self.nodes[from].id()])
            .args(["--cluster-to", &self.nodes[to].id()])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-yes", "--cluster-pipeline", "100"]);
        run_cli("reshard", &mut reshard);
        started.elapsed()
    }

    /// `CLUSTER FAILOVER` on `replica`; waits until it is a primary.
    pub fn failover(&self, replica: usize) {
        let _: String = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.nodes[replica].conn())
            .unwrap();
        poll_until(Duration::from_secs(30), "the replica to take over", || {
            (self.nodes[replica].role() == "master").then_some(())
        });
    }

    /// Waits until replica `node`'s link to its primary is up (it has synced): a replica that
    /// has not may refuse to take over when its primary dies.
    pub fn wait_synced(&self, node: usize) {
        poll_until(Duration::from_secs(60), "the replica to sync", || {
            let mut c = self.nodes[node].try_conn().ok()?;
            let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
            info.contains("master_link_status:up").then_some(())
        });
    }

    /// Waits until `node` is a primary (a failover after its primary was killed).
    pub fn wait_primary(&self, node: usize) {
        poll_until(
            Duration::from_secs(60),
            "the replica to be promoted",
            || {
                let ok = self.nodes[node].role() == "master";
                ok.then_some(())
            },
        );
    }
}
