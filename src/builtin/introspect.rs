//! COMMAND and its subcommands. COMMAND, COMMAND INFO and COMMAND DOCS come from a node (Redis's
//! own entries: flags, ACL categories, key specs, argument docs, in the client's protocol), with
//! strata's own STRATA command added; COUNT and GETKEYS are answered from strata's command
//! table, so they say what strata accepts.

use crate::backend::Lane;
use crate::backend::Router;
use crate::coordinator::plan::{forward, forward_then, key_error, payload};
use crate::protocol::resp3_reply::frame_len;
use crate::protocol::Proto;
use crate::protocol::{Reply, Request};

use super::local::{help, Done};
use crate::command::classify::{unknown_subcommand, wrong_arity};
use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec};
use crate::command::table::{lookup, COMMANDS};

/// One `COMMAND INFO` entry, in Redis 7's layout.
fn entry(spec: &CommandSpec) -> Reply {
    let flag_names = flags::NAMES
        .iter()
        .filter(|(f, _)| spec.has(*f))
        .map(|(_, n)| Reply::status(n))
        .collect();
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Array(flag_names),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

pub async fn command(router: &Router, lane: Lane, request: &Request) -> Done {
    let args = &request.args;
    let node = || router.view().topology.pick(lane.client);
    // COMMAND and COMMAND INFO without names: Redis's entries, then strata's own.
    let every_entry = args.len() == 1
        || (args.len() == 2 && args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"info")));
    if every_entry {
        let add = move |raw| with_strata_entry(raw, lane.proto);
        return forward_then(router, lane, node(), payload(request), add)
            .await
            .into();
    }
    let Some(sub) = args.get(1) else {
        return Done::from(crate::coordinator::Pending::ready(wrong_arity("command")));
    };
    let sub_name = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let reply = match sub_name.as_str() {
        "count" if args.len() == 2 => Reply::Integer(COMMANDS.len() as i64),
        "list" => {
            // Redis's list (and its FILTERBY), plus STRATA where the filter lets it through:
            // no filter, or a PATTERN it matches (it has no ACL category and no module).
            let ours = match (args.get(2), args.get(3), args.get(4), args.len()) {
                (None, _, _, _) => true,
                (Some(f), Some(by), Some(p), 5)
                    if f.eq_ignore_ascii_case(b"filterby")
                        && by.eq_ignore_ascii_case(b"pattern") =>
                {
                    crate::protocol::glob::glob_match(
                        p,
                        b"strata",
                        crate::protocol::glob::Case::Insensitive,
                    )
                }
                _ => false,
            };
            let add = move |raw: bytes::Bytes| {
                if !ours {
                    return Reply::Raw(raw);
                }
                let mut name = bytes::BytesMut::new();
                Reply::bulk("strata").encode(&mut name);
                append_element(raw, &name)
            };
            return forward_then(router, lane, node(), payload(request), add)
                .await
                .into();
        }
        "info" => {
            // Redis answers nil for STRATA, which it does not know: strata's entry goes there.
            let ours: Vec<bool> = args
                .iter()
                .skip(2)
                .map(|a| a.eq_ignore_ascii_case(b"strata"))
                .collect();
            let fill = move |raw| fill_strata_entries(raw, &ours, lane.proto);
            return forward_then(router, lane, node(), payload(request), fill)
                .await
                .into();
        }
        "getkeys" if args.len() >= 4 => getkeys(args.get(2..).unwrap_or_default()),
        "getkeys" => wrong_arity("command|getkeys"),
        "docs" => {
            return forward(router, lane, node(), payload(request)).await.into();
        }
        "help" => help(&[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands strata knows.",
            "COUNT",
            "    Return the number of commands.",
            "GETKEYS <full-command>",
            "    Return the keys from a full command.",
            "INFO [<command-name> ...]",
            "    Return details about the given commands, or all of them.",
            "LIST",
            "    Return the names of all commands.",
            "DOCS [<command-name> ...]",
            "    Return Redis's documentation for commands (from a node).",
        ]),
        "count" => wrong_arity("command|count"),
        _ => unknown_subcommand("command", sub),
    };
    Done::from(crate::coordinator::Pending::ready(reply))
}

/// STRATA's COMMAND INFO entry, encoded in `proto`.
fn strata_entry(proto: Proto) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    if let Some(spec) = lookup(b"strata") {
        match proto {
            Proto::Resp2 => entry(spec).encode(&mut out),
            Proto::Resp3 => crate::protocol::resp3::encode_command_entry(&entry(spec), &mut out),
        }
    }
    out
}

/// A node's COMMAND reply (`*<n>` and the entries) with strata's entry added at the end.
fn with_strata_entry(raw: bytes::Bytes, proto: Proto) -> Reply {
    append_element(raw, &strata_entry(proto))
}

/// A node's array reply with one more element, `element` (encoded), at the end.
fn append_element(raw: bytes::Bytes, element: &[u8]) -> Reply {
    let count = raw
        .iter()
        .position(|&b| b == b'\r')
        .and_then(|end| raw.get(1..end))
        .and_then(crate::protocol::parse_i64);
    let (Some(count), Some(b'*')) = (count, raw.first()) else {
        return Reply::Raw(raw);
    };
    let header_len = raw.iter().position(|&b| b == b'\n').map_or(0, |n| n + 1);
    let mut out = bytes::BytesMut::with_capacity(raw.len() + 256);
    out.extend_from_slice(format!("*{}\r\n", count + 1).as_bytes());
    out.extend_from_slice(raw.get(header_len..).unwrap_or_default());
    out.extend_from_slice(element);
    Reply::Raw(out.freeze())
}

/// A node's COMMAND INFO reply with strata's entry in the places (`ours`) that name STRATA.
fn fill_strata_entries(raw: bytes::Bytes, ours: &[bool], proto: Proto) -> Reply {
    if !ours.contains(&true) {
        return Reply::Raw(raw);
    }
    let Some(header_len) = raw.iter().position(|&b| b == b'\n').map(|n| n + 1) else {
        return Reply::Raw(raw);
    };
    let mut out = bytes::BytesMut::with_capacity(raw.len() + 256);
    out.extend_from_slice(raw.get(..header_len).unwrap_or_default());
    let mut at = header_len;
    for &mine in ours {
        let rest = raw.get(at..).unwrap_or_default();
        let Ok(Some(len)) = frame_len(rest) else {
            return Reply::Raw(raw);
        };
        if mine {
            out.extend_from_slice(&strata_entry(proto));
        } else {
            out.extend_from_slice(rest.get(..len).unwrap_or_default());
        }
        at += len;
    }
    out.extend_from_slice(raw.get(at..).unwrap_or_default());
    Reply::Raw(out.freeze())
}

/// COMMAND GETKEYS <command> <args...>.
fn getkeys(command: &[bytes::Bytes]) -> Reply {
    let Some(spec) = command.first().and_then(|name| lookup(name)) else {
        return Reply::error_static("ERR Invalid command specified");
    };
    if !spec.arity_ok(command.len()) {
        return Reply::error_static("ERR Invalid number of arguments specified for command");
    }
    let mut positions = Vec::new();
    if let Err(e) = key_positions(spec, command, &mut positions) {
        return key_error(spec.name, e);
    }
    if positions.is_empty() {
        return Reply::error_static("ERR The command has no key arguments");
    }
    Reply::Array(
        positions
            .iter()
            .filter_map(|&p| command.get(p).cloned())
            .map(Reply::Bulk)
            .collect(),
    )
}
