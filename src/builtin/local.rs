//! Commands strata answers itself (PING, ECHO, QUIT, SELECT, HELLO, AUTH, TIME, INFO, COMMAND,
//! STRATA) and the container commands whose route depends on the subcommand (CONFIG, CLIENT,
//! SCRIPT, FUNCTION).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::backend::Router;
use crate::control::clients::ClientInfo;
use crate::control::Control;
use crate::coordinator::merge::MergePlan;
use crate::coordinator::plan::{fan_out, forward, payload};
use crate::coordinator::Coordinator;
use crate::coordinator::Pending;
use crate::protocol::{Reply, Request};
use std::sync::Arc;

use crate::policy::LayerId;

use super::{info, introspect, strata};
use crate::command::classify::{disabled, unknown_subcommand, unsupported, wrong_arity};
use crate::command::spec::CommandSpec;

/// A local command's outcome.
pub struct Done {
    pub pending: Pending,
    pub close: bool,
    /// Set by STRATA WARM: the layer of the key it wrote (counted as a warm operation).
    pub layer: Option<LayerId>,
    /// TTLs the policy added or clamped (STRATA WARM).
    pub rewrites: u32,
}

impl Done {
    pub fn reply(reply: Reply) -> Done {
        Done::from(Pending::ready(reply))
    }
}

/// Runs a `Route::Local` or `Route::Subcommand` command.
pub async fn execute(
    coord: &Arc<Coordinator>,
    control: &Arc<Control>,
    client: &ClientInfo,
    spec: &'static CommandSpec,
    request: Request,
) -> Done {
    let args = &request.args;
    match spec.name {
        "pubsub" => Done::reply(
            Box::pin(super::pubsub_info::command(
                &coord.router,
                client.lane(),
                args,
            ))
            .await,
        ),
        "ping" => Done::reply(match args.get(1) {
            None => Reply::status("PONG"),
            Some(msg) if args.len() == 2 => Reply::Bulk(msg.clone()),
            Some(_) => wrong_arity("ping"),
        }),
        "echo" => Done::reply(
            args.get(1)
                .map_or_else(|| wrong_arity("echo"), |m| Reply::Bulk(m.clone())),
        ),
        "quit" => Done {
            close: true,
            ..Done::reply(Reply::ok())
        },
        "select" => Done::reply(select(args.get(1))),
        "auth" => Done::reply(auth(control, client, args)),
        "acl" => Done::reply(acl(control, client, args)),
        "hello" => Done::reply(hello(control, client, args)),
        "time" => Done::reply(time()),
        "info" => info::info(coord, control, client.lane(), args).await,
        "command" => introspect::command(&coord.router, client.lane(), &request).await,
        "strata" => strata::strata(coord, control, client, &request).await,
        "config" => config(&coord.router, control, client, &request).await,
        "client" => Done::reply(client_command(control, client, args)),
        "script" => script(&coord.router, client, &request).await,
        "function" => function(&coord.router, client, &request).await,
        other => Done::reply(unsupported(other)),
    }
}

impl From<Pending> for Done {
    fn from(pending: Pending) -> Done {
        Done {
            pending,
            close: false,
            layer: None,
            rewrites: 0,
        }
    }
}

fn select(db: Option<&Bytes>) -> Reply {
    match db.map(|d| crate::protocol::request::parse_i64(d)) {
        Some(Some(0)) => Reply::ok(),
        Some(Some(n)) if n > i64::from(i32::MAX) || n < i64::from(i32::MIN) => Reply::error_static(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ),
        Some(Some(_)) => Reply::error_static("ERR DB index is out of range"),
        _ => Reply::error_static("ERR value is not an integer or out of range"),
    }
}

/// AUTH: strata has no password of its own (yet), so it behaves like a Redis whose default
/// user has `nopass`.
/// AUTH [username] password.
fn auth(control: &Control, client: &ClientInfo, args: &[Bytes]) -> Reply {
    let acl = control.live.load().acl.clone();
    match args {
        [_, password] => {
            if !acl.default_has_password() {
                return Reply::error_static(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                );
            }
            authenticate(control, &acl, client, b"default", password)
        }
        [_, user, password] => authenticate(control, &acl, client, user, password),
        _ => Reply::error_static("ERR syntax error"),
    }
}

/// Authenticates `client` as `user`: `+OK`, or `WRONGPASS` counted and logged (with the
/// client's address, never the password).
fn authenticate(
    control: &Control,
    acl: &crate::acl::Acl,
    client: &ClientInfo,
    user: &[u8],
    password: &[u8],
) -> Reply {
    match acl.authenticate(user, password) {
        Some(u) => {
            client.set_user(Some(u.name.clone()));
            Reply::ok()
        }
        None => {
            control
                .stats
                .acl_denied_auth
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                client.addr = %client.addr,
                user = %String::from_utf8_lossy(user),
                "authentication failed"
            );
            Reply::error_static("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }
}

/// ACL WHOAMI, LIST, USERS and HELP; the subcommands that change users are refused (users
/// are configuration: `security.users`, applied by a reload).
fn acl(control: &Control, client: &ClientInfo, args: &[Bytes]) -> Reply {
    let sub = sub(args);
    let check = |arity: i32| sub_arity("acl", &sub, args.len(), arity);
    let acl = control.live.load().acl.clone();
    match sub.as_str() {
        "whoami" => check(2).map_or_else(
            |e| e,
            |()| Reply::bulk(client.user().as_deref().unwrap_or("default").to_string()),
        ),
        "list" => check(2).map_or_else(
            |e| e,
            |()| Reply::Array(acl.list().into_iter().map(Reply::bulk).collect()),
        ),
        "users" => check(2).map_or_else(
            |e| e,
            |()| {
                Reply::Array(
                    acl.names()
                        .into_iter()
                        .map(|n| Reply::bulk(n.to_string()))
                        .collect(),
                )
            },
        ),
        "help" => help(&[
            "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "WHOAMI",
            "    Return the current connection username.",
            "LIST",
            "    Show users with their hashed passwords and rules (admin).",
            "USERS",
            "    List the user names (admin).",
            "Users are configured in security.users and applied by STRATA RELOAD.",
        ]),
        "cat" | "deluser" | "dryrun" | "genpass" | "getuser" | "load" | "log" | "save"
        | "setuser" => unsupported(&format!("acl|{sub}")),
        _ => unknown_subcommand("acl", args.get(1).map_or(&b""[..], |s| s)),
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]], in Redis 7.0's order: the version, the
/// options, the authentication, then the name and protocol.
fn hello(control: &Control, client: &ClientInfo, args: &[Bytes]) -> Reply {
    let mut i = 1;
    let mut proto = None;
    if let Some(ver) = args.get(1) {
        match crate::protocol::request::parse_i64(ver) {
            Some(v @ (2 | 3)) => proto = Some(v as u8),
            Some(_) => return Reply::error_static("NOPROTO unsupported protocol version"),
            None => {
                return Reply::error_static(
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
        i = 2;
    }
    let mut setname = None;
    let mut credentials = None;
    while let Some(opt) = args.get(i) {
        if opt.eq_ignore_ascii_case(b"AUTH") && args.len() > i + 2 {
            credentials = args.get(i + 1).zip(args.get(i + 2));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && args.len() > i + 1 {
            setname = args.get(i + 1);
            if let Some(Err(e)) = setname.map(|n| valid_client_name(n)) {
                return e;
            }
            i += 2;
        } else {
            let opt = String::from_utf8_lossy(opt);
            return Reply::error(format!("ERR Syntax error in HELLO option '{opt}'"));
        }
    }
    if let Some((user, password)) = credentials {
        let acl = control.live.load().acl.clone();
        if let Reply::Error(e) = authenticate(control, &acl, client, user, password) {
            return Reply::Error(e);
        }
    }
    if client.user().is_none() {
        return Reply::error_static(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = setname {
        if let Err(e) = valid_client_name(name) {
            return e;
        }
        client.set_name(&String::from_utf8_lossy(name));
    }
    if let Some(p) = proto {
        // The reply goes out in the new protocol already (a map under RESP3), as Redis does.
        client.set_proto(p);
    }
    Reply::Array(vec![
        Reply::bulk("server"),
        Reply::bulk("redis"),
        Reply::bulk("version"),
        Reply::bulk(info::REDIS_VERSION),
        Reply::bulk("proto"),
        Reply::Integer(i64::from(client.proto())),
        Reply::bulk("id"),
        Reply::Integer(client.id as i64),
        Reply::bulk("mode"),
        Reply::bulk("standalone"),
        Reply::bulk("role"),
        Reply::bulk("master"),
        Reply::bulk("modules"),
        Reply::Array(Vec::new()),
    ])
}

fn time() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::bulk(now.as_secs().to_string()),
        Reply::bulk(now.subsec_micros().to_string()),
    ])
}

/// Redis refuses client names with spaces, newlines and other special characters.
fn valid_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Reply::error_static(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// Lower-cased subcommand of a container command.
fn sub(args: &[Bytes]) -> String {
    args.get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default()
}

/// Checks a subcommand's arity like Redis (`'config|get'` in the message).
fn sub_arity(command: &str, sub: &str, argc: usize, arity: i32) -> Result<(), Reply> {
    let ok = if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= arity.unsigned_abs() as usize
    };
    if ok {
        Ok(())
    } else {
        Err(wrong_arity(&format!("{command}|{sub}")))
    }
}

async fn config(
    router: &Router,
    control: &Control,
    client: &ClientInfo,
    request: &Request,
) -> Done {
    let args = &request.args;
    let sub = sub(args);
    match sub.as_str() {
        "get" => Done::reply(match sub_arity("config", "get", args.len(), -3) {
            Err(e) => e,
            Ok(()) => super::config_get::config_get(router, control, client.lane(), request).await,
        }),
        "set" => {
            if let Err(e) = sub_arity("config", "set", args.len(), -4) {
                return Done::reply(e);
            }
            if !router
                .view()
                .settings
                .config
                .security
                .allow_dangerous_commands
            {
                return Done::reply(disabled("config|set"));
            }
            fan_out(router, client.lane(), payload(request), MergePlan::AllOk)
                .await
                .into()
        }
        "resetstat" => {
            if let Err(e) = sub_arity("config", "resetstat", args.len(), 2) {
                return Done::reply(e);
            }
            control.reset_stats();
            fan_out(router, client.lane(), payload(request), MergePlan::AllOk)
                .await
                .into()
        }
        "help" => Done::reply(help(&[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern> [<pattern> ...]",
            "    Return the parameters matching the glob-like <pattern>s: strata's own, the",
            "    others from the first node that is up.",
            "SET <directive> <value>",
            "    Set a parameter on every node (needs security.allow_dangerous_commands).",
            "RESETSTAT",
            "    Reset strata's statistics and every node's.",
        ])),
        "rewrite" => Done::reply(unsupported("config|rewrite")),
        _ => Done::reply(unknown_subcommand(
            "config",
            args.get(1).map_or(&b""[..], |s| s),
        )),
    }
}

/// CLIENT KILL, old form (`<ip:port>`: OK or an error) and new form (filters: the number of
/// clients killed). Applies to strata's own client connections.
fn client_kill(control: &Control, me: &ClientInfo, args: &[Bytes]) -> Result<Reply, Reply> {
    let text = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
    let all = control.clients.all();
    if args.len() == 3 {
        let addr = text(2).unwrap_or_default();
        return match all.iter().find(|c| c.addr.to_string() == addr) {
            Some(c) => {
                c.kill();
                Ok(Reply::ok())
            }
            None => Err(Reply::error_static("ERR No such client")),
        };
    }
    if args.len() < 4 || args.len() % 2 != 0 {
        return Err(Reply::error_static("ERR syntax error"));
    }
    let (mut id, mut addr, mut laddr, mut skipme) = (None, None, None, true);
    let mut i = 2;
    while let (Some(key), Some(value)) = (text(i), text(i + 1)) {
        match key.to_ascii_lowercase().as_str() {
            "id" => match value.parse::<u64>() {
                Ok(n) if n > 0 => id = Some(n),
                _ => {
                    return Err(Reply::error_static(
                        "ERR client-id should be greater than 0",
                    ))
                }
            },
            "addr" => addr = Some(value),
            "laddr" => laddr = Some(value),
            "skipme" => match value.to_ascii_lowercase().as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => return Err(Reply::error_static("ERR syntax error")),
            },
            // TYPE, USER, MAXAGE: strata's clients are all normal clients of the default user.
            "type" | "user" | "maxage" => {}
            _ => return Err(Reply::error_static("ERR syntax error")),
        }
        i += 2;
    }
    let mut killed = 0;
    for c in all {
        let matches = id.is_none_or(|id| c.id == id)
            && addr.as_ref().is_none_or(|a| c.addr.to_string() == *a)
            && laddr.as_ref().is_none_or(|a| c.laddr.to_string() == *a)
            && !(skipme && c.id == me.id);
        if matches {
            c.kill();
            killed += 1;
        }
    }
    Ok(Reply::Integer(killed))
}

fn client_command(control: &Control, client: &ClientInfo, args: &[Bytes]) -> Reply {
    let sub = sub(args);
    let check = |arity: i32| sub_arity("client", &sub, args.len(), arity);
    let result = match sub.as_str() {
        "id" => check(2).map(|()| Reply::Integer(client.id as i64)),
        "getname" => check(2).map(|()| {
            let name = client.name();
            if name.is_empty() {
                Reply::Nil
            } else {
                Reply::text(name)
            }
        }),
        "setname" => check(3).and_then(|()| {
            let name = args.get(2).map_or(&b""[..], |n| n);
            valid_client_name(name)?;
            client.set_name(&String::from_utf8_lossy(name));
            Ok(Reply::ok())
        }),
        "info" => check(2)
            .map(|()| Reply::text(format!("{}\n", client.describe(crate::command::table::command_name)))),
        "list" => check(-2).map(|()| client_list(control, args)),
        "no-evict" => check(3).and_then(|()| match args.get(2) {
            Some(v) if v.eq_ignore_ascii_case(b"on") || v.eq_ignore_ascii_case(b"off") => {
                Ok(Reply::ok())
            }
            _ => Err(Reply::error_static("ERR syntax error")),
        }),
        "help" => Ok(help(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID, GETNAME, SETNAME <name>, INFO,",
            "LIST [TYPE normal|pubsub] [ID id ...], NO-EVICT <ON|OFF>,",
            "KILL <ip:port> | KILL [ID <id>] [ADDR <ip:port>] [LADDR <ip:port>] [SKIPME yes|no]",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]] [OPTIN] [OPTOUT] [NOLOOP],",
            "CACHING (YES|NO), GETREDIR, TRACKINGINFO",
            "(strata's own client connections; PAUSE is not supported)",
        ])),
        "kill" => client_kill(control, client, args),
        "pause" | "unpause" => Err(Reply::error(format!(
            "ERR strata: CLIENT {} is not supported through the proxy: it would stop one node's clients, not strata's (pause the writers instead)",
            sub.to_ascii_uppercase()
        ))),
        "tracking" => {
            check(-3).map(|()| super::client_tracking::tracking(control, client, args))
        }
        "caching" => check(3).map(|()| super::client_tracking::caching(client, args)),
        "getredir" => check(2).map(|()| super::client_tracking::getredir(client)),
        "trackinginfo" => check(2).map(|()| super::client_tracking::trackinginfo(client)),
        "reply" | "unblock" => Err(unsupported(&format!("client|{sub}"))),
        _ => Err(unknown_subcommand(
            "client",
            args.get(1).map_or(&b""[..], |s| s),
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// CLIENT LIST [TYPE normal|...] [ID id ...]: strata's own client connections.
fn client_list(control: &Control, args: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    // TYPE normal or pubsub: subscribed or not (strata has no master/replica clients).
    let mut subscribed: Option<bool> = None;
    let mut i = 2;
    while let Some(opt) = args.get(i) {
        if opt.eq_ignore_ascii_case(b"TYPE") {
            let Some(kind) = args.get(i + 1) else {
                return Reply::error_static("ERR syntax error");
            };
            let kind = String::from_utf8_lossy(kind).to_ascii_lowercase();
            match kind.as_str() {
                "normal" => subscribed = Some(false),
                "pubsub" => subscribed = Some(true),
                "master" | "replica" | "slave" => ids = Some(Vec::new()),
                _ => return Reply::error(format!("ERR Unknown client type '{kind}'")),
            }
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"ID") && args.len() > i + 1 {
            let mut wanted = Vec::new();
            i += 1;
            while let Some(id) = args.get(i) {
                match crate::protocol::request::parse_i64(id) {
                    Some(n) if n > 0 => wanted.push(n as u64),
                    _ => return Reply::error_static("ERR Invalid client ID"),
                }
                i += 1;
            }
            ids = Some(wanted);
        } else {
            return Reply::error_static("ERR syntax error");
        }
    }
    let mut out = String::new();
    for c in control.clients.all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id))
            || subscribed.is_some_and(|s| s != c.is_subscribed())
        {
            continue;
        }
        out.push_str(&c.describe(crate::command::table::command_name));
        out.push('\n');
    }
    Reply::text(out)
}

async fn script(router: &Router, client: &ClientInfo, request: &Request) -> Done {
    let args = &request.args;
    let sub = sub(args);
    let (arity, plan) = match sub.as_str() {
        // Loaded on every node so EVALSHA works wherever its keys live.
        "load" => (3, MergePlan::FirstReply),
        "exists" => (-3, MergePlan::AllOfArrays),
        "flush" => (-2, MergePlan::AllOk),
        "help" => {
            let node = first_node(router, client);
            return forward(router, client.lane(), node, payload(request))
                .await
                .into();
        }
        "kill" | "debug" => return Done::reply(unsupported(&format!("script|{sub}"))),
        _ => {
            return Done::reply(unknown_subcommand(
                "script",
                args.get(1).map_or(&b""[..], |s| s),
            ))
        }
    };
    if let Err(e) = sub_arity("script", &sub, args.len(), arity) {
        return Done::reply(e);
    }
    fan_out(router, client.lane(), payload(request), plan)
        .await
        .into()
}

async fn function(router: &Router, client: &ClientInfo, request: &Request) -> Done {
    let args = &request.args;
    let sub = sub(args);
    let (arity, plan) = match sub.as_str() {
        "load" => (-3, MergePlan::FirstReply),
        "delete" => (3, MergePlan::AllOk),
        "flush" => (-2, MergePlan::AllOk),
        "restore" => (-3, MergePlan::AllOk),
        "list" | "dump" | "stats" | "help" => {
            let node = first_node(router, client);
            return forward(router, client.lane(), node, payload(request))
                .await
                .into();
        }
        "kill" => return Done::reply(unsupported("function|kill")),
        _ => {
            return Done::reply(unknown_subcommand(
                "function",
                args.get(1).map_or(&b""[..], |s| s),
            ))
        }
    };
    if let Err(e) = sub_arity("function", &sub, args.len(), arity) {
        return Done::reply(e);
    }
    fan_out(router, client.lane(), payload(request), plan)
        .await
        .into()
}

/// The node keyless read-only requests go to.
fn first_node(router: &Router, client: &ClientInfo) -> usize {
    router.view().topology.pick(client.id)
}

/// A HELP reply: one status line per entry, as Redis does.
pub fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
}
