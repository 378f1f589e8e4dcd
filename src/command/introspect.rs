//! COMMAND and its subcommands (COUNT, INFO, LIST, GETKEYS, DOCS), answered from the command
//! table so clients see exactly what strata accepts. DOCS is the exception: the help texts come
//! from a node (they are Redis's own), which is what gives redis-cli its argument hints.

use crate::backend::Lane;
use crate::coordinator::plan::{forward, key_error, payload};
use crate::protocol::{Reply, Request};
use crate::server::Worker;

use super::classify::{unknown_subcommand, wrong_arity};
use super::keys::key_positions;
use super::local::{help, Done};
use super::spec::{flags, CommandSpec};
use super::table::{lookup, COMMANDS};

/// The name of the command at `index` in the table (CLIENT LIST's `cmd=`).
pub fn command_name(index: usize) -> &'static str {
    COMMANDS.get(index).map_or("NULL", |c| c.name)
}

/// The table index of a spec that came from the table.
pub fn command_index(spec: &'static CommandSpec) -> Option<usize> {
    let base = COMMANDS.as_ptr() as usize;
    let at = spec as *const CommandSpec as usize;
    let size = std::mem::size_of::<CommandSpec>().max(1);
    let index = at.checked_sub(base)? / size;
    (index < COMMANDS.len()).then_some(index)
}

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

pub async fn command(worker: &Worker, lane: Lane, request: &Request) -> Done {
    let args = &request.args;
    let Some(sub) = args.get(1) else {
        return Done::from(crate::coordinator::Pending::ready(Reply::Array(
            COMMANDS.iter().map(entry).collect(),
        )));
    };
    let sub_name = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let reply = match sub_name.as_str() {
        "count" if args.len() == 2 => Reply::Integer(COMMANDS.len() as i64),
        "list" => Reply::Array(COMMANDS.iter().map(|c| Reply::bulk(c.name)).collect()),
        "info" if args.len() == 2 => Reply::Array(COMMANDS.iter().map(entry).collect()),
        "info" => Reply::Array(
            args.iter()
                .skip(2)
                .map(|name| lookup(name).map_or(Reply::NilArray, entry))
                .collect(),
        ),
        "getkeys" if args.len() >= 4 => getkeys(args.get(2..).unwrap_or_default()),
        "getkeys" => wrong_arity("command|getkeys"),
        "docs" => {
            let node = worker.shared.topology.load().pick(lane.client);
            return forward(worker, lane, node, payload(request)).await.into();
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
