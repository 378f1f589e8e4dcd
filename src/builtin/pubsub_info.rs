//! `PUBSUB CHANNELS | NUMSUB | NUMPAT | SHARDCHANNELS | SHARDNUMSUB`: asked of every node and
//! merged (channels live on their ring node, patterns on every node; see `client::pubsub`).

use crate::backend::Lane;
use std::collections::BTreeSet;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::Router;
use crate::coordinator::scan::ask;
use crate::protocol::Reply;

use super::local::help;
use crate::command::classify::{unknown_subcommand, wrong_arity};

pub async fn command(router: &Router, lane: Lane, args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    let full = format!("pubsub|{sub}");
    let replies =
        match sub.as_str() {
            "channels" | "shardchannels" if args.len() <= 3 => ask_all(router, lane, args).await,
            "numsub" | "shardnumsub" => ask_all(router, lane, args).await,
            "numpat" if args.len() == 2 => ask_all(router, lane, args).await,
            "channels" | "shardchannels" | "numpat" => return wrong_arity(&full),
            "help" => return help(&[
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels.",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern>.",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s).",
            ]),
            _ => return unknown_subcommand("pubsub", args.get(1).map_or(&b""[..], |s| s)),
        };
    let replies = match replies {
        Ok(r) => r,
        Err(e) => return e,
    };
    match sub.as_str() {
        "channels" | "shardchannels" => {
            let mut all = BTreeSet::new();
            for r in replies {
                if let BytesFrame::Array(items) = r {
                    all.extend(items.into_iter().filter_map(bulk));
                }
            }
            Reply::Array(all.into_iter().map(Reply::Bulk).collect())
        }
        "numpat" => Reply::Integer(replies.iter().filter_map(int).max().unwrap_or(0)),
        _ => {
            // [channel, count, ...] in argument order, counts summed over the nodes.
            let names: Vec<Bytes> = args.iter().skip(2).cloned().collect();
            let mut counts = vec![0i64; names.len()];
            for r in replies {
                if let BytesFrame::Array(items) = r {
                    for (i, pair) in items.chunks(2).enumerate() {
                        if let (Some(c), Some(n)) = (counts.get_mut(i), pair.get(1).and_then(int)) {
                            *c += n;
                        }
                    }
                }
            }
            Reply::Array(
                names
                    .into_iter()
                    .zip(counts)
                    .flat_map(|(n, c)| [Reply::Bulk(n), Reply::Integer(c)])
                    .collect(),
            )
        }
    }
}

async fn ask_all(router: &Router, lane: Lane, args: &[Bytes]) -> Result<Vec<BytesFrame>, Reply> {
    let members = router.view().topology.members.clone();
    let parts: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
    let mut replies = Vec::with_capacity(members.len());
    for node in members {
        replies.push(ask(router, lane, node, &parts).await?.frame);
    }
    Ok(replies)
}

fn bulk(frame: BytesFrame) -> Option<Bytes> {
    match frame {
        BytesFrame::BulkString(b) => Some(b),
        _ => None,
    }
}

fn int(frame: &BytesFrame) -> Option<i64> {
    match frame {
        BytesFrame::Integer(n) => Some(*n),
        _ => None,
    }
}
