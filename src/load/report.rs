//! What the load prints after the run: the workers' tallies, the read-back of every
//! acknowledged write, and strata's own view (INFO nodes and layers, `/healthz`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::worker::{connect, ByPhase, Phase, Tally, Value, SOCKET_TIMEOUT};
use super::LoadError;
use crate::protocol::reply::encode_command;

/// GETs per pipeline when the acknowledged writes are read back.
const CHECK_BATCH: usize = 500;
/// Failures (and lost writes) shown as examples.
const EXAMPLES: usize = 8;

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints the per-second table (`kill_second` marked), the totals by phase and the first
/// failures; returns the failed reads by phase.
pub(super) fn tallies(tallies: &[Tally], kill_second: u64) -> ByPhase<u64> {
    println!("\nper second: t  requests  failed-writes  failed-reads");
    let mut rows: BTreeMap<u64, [u64; 3]> = BTreeMap::new();
    for tally in tallies {
        for (second, counts) in &tally.per_second {
            let row = rows.entry(*second).or_default();
            for (sum, count) in row.iter_mut().zip(counts) {
                *sum += count;
            }
        }
    }
    for (second, [requests, writes, reads]) in &rows {
        let mark = if *second == kill_second {
            "  <- kill"
        } else {
            ""
        };
        println!("  {second:>3}  {requests:>7}  {writes:>5}  {reads:>5}{mark}");
    }

    let sum = |f: &dyn Fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let by_phase = |f: &dyn Fn(&Tally) -> ByPhase<u64>| ByPhase {
        before: sum(&|t| f(t).before),
        window: sum(&|t| f(t).window),
        after: sum(&|t| f(t).after),
    };
    let writes_failed = by_phase(&|t| t.writes_failed);
    let reads_failed = by_phase(&|t| t.reads_failed);
    println!();
    println!(
        "writes acknowledged:                       {}",
        sum(&|t| t.writes_ok)
    );
    println!(
        "writes failed:                             {} (before the kill {}, in the window {}, \
         after it {})",
        writes_failed.before + writes_failed.window + writes_failed.after,
        writes_failed.before,
        writes_failed.window,
        writes_failed.after
    );
    println!(
        "reads ok:                                  {} (of which {} saw a later unacknowledged \
         write)",
        sum(&|t| t.reads_ok),
        sum(&|t| t.reads_unacked)
    );
    for phase in Phase::ALL {
        let name = format!("{}:", phase.name());
        println!("reads failed {name:<29} {}", reads_failed.get(phase));
    }
    for phase in Phase::ALL {
        let name = format!("{}:", phase.name());
        let slowest = tallies
            .iter()
            .map(|t| t.slowest.get(phase))
            .max()
            .unwrap_or_default();
        println!("slowest request {name:<26} {:.0} ms", ms(slowest));
    }
    let mut samples: Vec<&(Duration, String)> =
        tallies.iter().flat_map(|t| t.samples.iter()).collect();
    samples.sort();
    if !samples.is_empty() {
        println!("first failures:");
        for (at, what) in samples.into_iter().take(EXAMPLES) {
            println!("  t={:.3} s  {what}", at.as_secs_f64());
        }
    }
    reads_failed
}

/// Reads every acknowledged key back (pipelined GETs through strata, the layer's read
/// consistency) and prints what differs; returns the count of acknowledged writes missing,
/// different or unreadable.
pub(super) async fn check(addr: &str, tallies: &[Tally]) -> Result<u64, LoadError> {
    let mut expected: BTreeMap<&str, &str> = BTreeMap::new();
    let mut later: HashMap<&str, &HashSet<String>> = HashMap::new();
    for tally in tallies {
        expected.extend(tally.acked.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        later.extend(tally.unacked.iter().map(|(k, v)| (k.as_str(), v)));
    }
    let (mut missing, mut different, mut superseded, mut read_errors) = (0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let strata = |source| LoadError::Strata {
        addr: addr.to_owned(),
        source,
    };
    let mut conn = connect(addr).await.map_err(strata)?;
    let items: Vec<(&str, &str)> = expected.into_iter().collect();
    for batch in items.chunks(CHECK_BATCH) {
        let mut payload = BytesMut::new();
        for (key, _) in batch {
            encode_command(&mut payload, [&b"GET"[..], key.as_bytes()].into_iter());
        }
        let replies = conn.pipeline(&payload, batch.len()).await.map_err(strata)?;
        for (&(key, want), reply) in batch.iter().zip(replies) {
            let got = Value::from_frame(reply.frame);
            let landed = |v: &str| later.get(key).is_some_and(|l| l.contains(v));
            let problem = match &got {
                Value::Error(e) => {
                    read_errors += 1;
                    format!("error {e}")
                }
                _ if got.text() == Some(want) => continue,
                _ if got.text().is_some_and(landed) => {
                    superseded += 1;
                    continue;
                }
                Value::Nil => {
                    missing += 1;
                    "missing".to_owned()
                }
                other => {
                    different += 1;
                    format!("holds {other:?}")
                }
            };
            if examples.len() < EXAMPLES {
                examples.push(format!("  {key}: acknowledged {want:?}, {problem}"));
            }
        }
    }
    let lost = missing + different + read_errors;
    println!();
    println!(
        "final check: {} acknowledged keys read back with quorum reads",
        items.len()
    );
    println!(
        "acknowledged writes missing or different:  {lost} (missing {missing}, another value \
         {different}, read errors {read_errors})"
    );
    println!(
        "keys holding a later unacknowledged write: {superseded} (a failed write may have \
         landed: not a loss)"
    );
    for example in examples {
        println!("{example}");
    }
    Ok(lost)
}

/// Prints strata's view after the run: every node's state and transitions, the layer's
/// figures, and `/healthz` when there is an admin endpoint.
pub(super) async fn status(addr: &str, admin: Option<&str>, layer: &str) -> Result<(), LoadError> {
    let info = ask(addr, &["INFO", "nodes"]).await?;
    let layers = ask(addr, &["INFO", "layers"]).await?;
    let field =
        |f: &HashMap<&str, &str>, name: &str| f.get(name).copied().unwrap_or("?").to_owned();
    for (name, f) in info_lines(&info, "node_") {
        println!(
            "{name}: state={} down_transitions={} up_transitions={} hints_pending={} \
             health_reason={}",
            field(&f, "state"),
            field(&f, "down_transitions"),
            field(&f, "up_transitions"),
            field(&f, "hints_pending"),
            field(&f, "health_reason")
        );
    }
    let layer_line = format!("layer_{layer}");
    for (_, f) in info_lines(&layers, &layer_line).filter(|(name, _)| *name == layer_line) {
        println!(
            "layer {layer}: writes={} write_failures={} failovers={} repairs={} errors={}",
            field(&f, "writes"),
            field(&f, "write_failures"),
            field(&f, "failovers"),
            field(&f, "repairs"),
            field(&f, "errors")
        );
    }
    if let Some(admin) = admin {
        println!("/healthz: {}", healthz(admin).await);
    }
    Ok(())
}

/// One request on a connection of its own (an error ends the run).
async fn ask(addr: &str, args: &[&str]) -> Result<Value, LoadError> {
    let strata = |source| LoadError::Strata {
        addr: addr.to_owned(),
        source,
    };
    let mut conn = connect(addr).await.map_err(strata)?;
    let reply = conn.call(args).await.map_err(strata)?;
    Ok(Value::from_frame(reply.frame))
}

/// The lines of an INFO reply starting with `prefix` (`node_`, `layer_fc`): name and fields.
/// Fields are split at commas, so a field after one holding a comma (a reason text) is cut
/// short.
pub(super) fn info_lines<'a>(
    info: &'a Value,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, HashMap<&'a str, &'a str>)> + 'a {
    info.text()
        .unwrap_or_default()
        .lines()
        .filter(move |line| line.starts_with(prefix))
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            Some((
                name,
                fields
                    .split(',')
                    .filter_map(|f| f.split_once('='))
                    .collect(),
            ))
        })
}

/// `GET /healthz` on the admin endpoint: the body, or what went wrong.
async fn healthz(admin: &str) -> String {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: strata\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(SOCKET_TIMEOUT, get).await {
        Err(_) => return format!("no answer within {}s", SOCKET_TIMEOUT.as_secs()),
        Ok(Err(e)) => return e.to_string(),
        Ok(Ok(response)) => response,
    };
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        body.trim().to_owned()
    } else {
        status.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_give_fields() {
        let info = Value::Text(
            "# Nodes\r\nnode_node1:addr=127.0.0.1:1,state=up,health_reason=\r\n\
             node_node2:addr=127.0.0.1:2,state=down,health_reason=heartbeat: x, y\r\n"
                .into(),
        );
        let lines: Vec<_> = info_lines(&info, "node_").collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].0, "node_node2");
        assert_eq!(lines[1].1.get("state"), Some(&"down"));
        assert_eq!(lines[1].1.get("addr"), Some(&"127.0.0.1:2"));
        assert_eq!(lines[1].1.get("health_reason"), Some(&"heartbeat: x"));
    }
}
