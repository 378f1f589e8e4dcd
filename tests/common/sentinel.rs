//! A real Redis Sentinel set-up for tests: a primary and a replica (`redis-server` on free
//! loopback ports) watched by three sentinels (`redis-server <conf> --sentinel`, quorum 2,
//! `down-after-milliseconds 1000`), all killed on drop.

use super::*;

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "mymaster";

/// One sentinel process.
struct Sentinel {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A primary, its replica and three sentinels.
pub struct SentinelSetup {
    /// `data[0]` starts as the primary, `data[1]` as its replica.
    pub data: Vec<RedisNode>,
    sentinels: Vec<Sentinel>,
}

fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(READ_TIMEOUT))?;
    cmd.query(&mut c)
}

impl SentinelSetup {
    pub fn start() -> SentinelSetup {
        let data = RedisNode::start_many(2);
        let primary_port = data[0].port();
        let _: String = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(primary_port)
            .query(&mut data[1].conn())
            .unwrap();
        poll_until(Duration::from_secs(20), "the replica to sync", || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut data[1].conn())
                .ok()?;
            info.contains("master_link_status:up").then_some(())
        });
        let sentinels = (0..3).map(|_| start_sentinel(primary_port)).collect();
        let setup = SentinelSetup { data, sentinels };
        poll_until(
            Duration::from_secs(30),
            "the sentinels to know each other",
            || {
                let ready = setup.sentinels.iter().all(|s| {
                    let master: redis::RedisResult<Vec<String>> =
                        query(s.port, redis::cmd("SENTINEL").arg("master").arg(MASTER));
                    master.is_ok_and(|fields| {
                        let get = |k: &str| {
                            fields
                                .chunks(2)
                                .find(|kv| kv[0] == k)
                                .map(|kv| kv[1].clone())
                                .unwrap_or_default()
                        };
                        get("num-slaves") == "1" && get("num-other-sentinels") == "2"
                    })
                });
                ready.then_some(())
            },
        );
        setup
    }

    /// `127.0.0.1:<port>` of each sentinel.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The primary's port as the first sentinel that answers reports it.
    pub fn primary_port(&self) -> u16 {
        for s in &self.sentinels {
            if s.child.is_none() {
                continue;
            }
            let addr: redis::RedisResult<Vec<String>> = query(
                s.port,
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(MASTER),
            );
            if let Ok(addr) = addr {
                return addr[1].parse().unwrap();
            }
        }
        panic!("no sentinel answered")
    }

    /// Index in `data` of the node that is the primary now.
    pub fn primary(&self) -> usize {
        let port = self.primary_port();
        self.data.iter().position(|n| n.port() == port).unwrap()
    }

    /// `SENTINEL FAILOVER`: the replica is promoted without asking the others; waits until
    /// the sentinels report it and it answers ROLE as a primary.
    pub fn failover(&self) {
        let before = self.primary();
        let _: String = query(
            self.sentinels[0].port,
            redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER),
        )
        .unwrap();
        self.wait_primary(1 - before);
    }

    /// Waits until `data[index]` is the primary for the sentinels and for itself.
    pub fn wait_primary(&self, index: usize) {
        poll_until(Duration::from_secs(60), "the failover", || {
            let node = &self.data[index];
            let role: redis::Value = redis::cmd("ROLE").query(&mut node.conn()).ok()?;
            let is_primary = matches!(&role, redis::Value::Array(v)
                if matches!(v.first(), Some(redis::Value::BulkString(b)) if b == b"master"));
            (is_primary && self.primary_port() == node.port()).then_some(())
        });
    }
}

fn start_sentinel(primary_port: u16) -> Sentinel {
    for _ in 0..20 {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir for a sentinel");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile sentinel.log\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 10000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let mut s = Sentinel {
            child: Some(child),
            port,
            _dir: dir,
        };
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(Ok(Some(_))) = s.child.as_mut().map(|c| c.try_wait()) {
                s.child = None;
                break;
            }
            if query::<String>(port, &mut redis::cmd("PING")).is_ok() {
                return s;
            }
            std::thread::sleep(POLL_STEP);
        }
    }
    panic!("cannot start a sentinel");
}
