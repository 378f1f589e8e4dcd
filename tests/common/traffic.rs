//! Client traffic for failover tests: threads doing SET then GET of their own keys through
//! strata, counting operations, error replies (with when they came) and reads that returned
//! another value than the client's last write.

use super::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Client traffic through strata until `stop`: SET then GET of its own keys, checking every
/// value read. Counts operations and errors, and when errors were seen.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<(Instant, String)>>>,
    /// When a read returned another value than the client's last write.
    wrong: Arc<Mutex<Vec<Instant>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// `clients` threads against strata at `addr`.
    pub fn start(addr: &str, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let wrong = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|t| {
                let (stop, ops, errors, wrong) =
                    (stop.clone(), ops.clone(), errors.clone(), wrong.clone());
                let addr = addr.to_string();
                std::thread::spawn(move || {
                    let mut c = RawClient::connect(&addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // The model router's four layers in turn (500 keys per client,
                        // each always of the same layer).
                        let layer = ["route", "result", "meta", "load"][(i % 4) as usize];
                        let key = format!("{layer}:{t}:{}", i % 500);
                        let value = format!("{i}");
                        // A failed SET may or may not have landed: the GET after it is
                        // not checked.
                        let mut landed = true;
                        for (cmd, want) in [
                            (vec!["SET", key.as_str(), value.as_str()], Resp::ok()),
                            (vec!["GET", key.as_str()], Resp::bulk(&value)),
                        ] {
                            let Some(reply) = c.try_call(&cmd) else {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push((Instant::now(), "connection".into()));
                                match RawClient::try_connect(&addr) {
                                    Ok(again) => c = again,
                                    Err(_) => return,
                                }
                                landed = false;
                                continue;
                            };
                            ops.fetch_add(1, Ordering::Relaxed);
                            if reply.is_error() {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push((Instant::now(), reply.error_text()));
                                landed = false;
                            } else if reply != want && landed {
                                wrong.lock().unwrap().push(Instant::now());
                            }
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            ops,
            errors,
            wrong,
            threads,
        }
    }

    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Errors so far: how many, and the span from the first to the last.
    pub fn errors(&self) -> (usize, Duration, Vec<String>) {
        let errors = self.errors.lock().unwrap();
        let span = match (errors.first(), errors.last()) {
            (Some((a, _)), Some((b, _))) => b.duration_since(*a),
            _ => Duration::ZERO,
        };
        let mut kinds: Vec<String> = errors.iter().map(|(_, e)| e.clone()).collect();
        kinds.sort();
        kinds.dedup();
        (errors.len(), span, kinds)
    }

    pub fn wrong_before(&self, at: Instant) -> usize {
        self.wrong
            .lock()
            .unwrap()
            .iter()
            .filter(|&&w| w < at)
            .count()
    }

    pub fn stop(self) -> (u64, usize, Duration, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap();
        let span = match (errors.first(), errors.last()) {
            (Some((a, _)), Some((b, _))) => b.duration_since(*a),
            _ => Duration::ZERO,
        };
        (
            self.ops.load(Ordering::Relaxed),
            errors.len(),
            span,
            self.wrong.lock().unwrap().len(),
        )
    }
}

/// Waits until the traffic made `n` more operations.
pub fn let_run(traffic: &Traffic, n: u64) {
    let start = traffic.ops();
    poll_until(Duration::from_secs(30), "client traffic to go on", || {
        (traffic.ops() >= start + n).then_some(())
    });
}
