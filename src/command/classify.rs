//! First step of every request: find the command in the table and check what can be checked
//! without a node (known command, arity, supported through the proxy, allowed by config).

use crate::protocol::{Reply, Request};

use super::spec::{flags, CommandSpec, Route};
use super::table;

/// Looks the request's command up and validates it; an `Err` is the reply to send.
pub fn classify(request: &Request, allow_dangerous: bool) -> Result<&'static CommandSpec, Reply> {
    let name = request.args.first().map(|a| a.as_ref()).unwrap_or_default();
    let Some(spec) = table::lookup(name) else {
        return Err(unknown_command(request));
    };
    if !spec.arity_ok(request.args.len()) {
        return Err(wrong_arity(spec.name));
    }
    if spec.route == Route::Unsupported {
        return Err(unsupported(spec.name));
    }
    if spec.has(flags::DANGEROUS) && !allow_dangerous {
        return Err(disabled(spec.name));
    }
    Ok(spec)
}

/// True when a stream read carries `BLOCK` before its `STREAMS` section (it then blocks, and
/// runs on a dedicated connection).
pub fn has_block_option(request: &Request) -> bool {
    request
        .args
        .iter()
        .skip(1)
        .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
        .any(|a| a.eq_ignore_ascii_case(b"BLOCK"))
}

/// Redis's text for an unknown command: the name and the first arguments, at most 128
/// characters of them, each quoted and followed by a space.
pub fn unknown_command(request: &Request) -> Reply {
    let mut args = String::new();
    for arg in request.args.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        let text = String::from_utf8_lossy(arg);
        let shown: String = text.chars().take(room).collect();
        args.push_str(&format!("'{shown}' "));
    }
    let name = request
        .args
        .first()
        .map(|n| {
            String::from_utf8_lossy(n)
                .chars()
                .take(128)
                .collect::<String>()
        })
        .unwrap_or_default();
    Reply::error(format!(
        "ERR unknown command '{name}', with args beginning with: {args}"
    ))
}

/// `ERR wrong number of arguments for '<name>' command` (`name` may be `config|get`).
pub fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// `ERR strata: '<name>' is not supported through the proxy`.
pub fn unsupported(name: &str) -> Reply {
    Reply::error(format!(
        "ERR strata: '{name}' is not supported through the proxy"
    ))
}

/// The refusal of a dangerous command when `security.allow_dangerous_commands` is false.
pub fn disabled(name: &str) -> Reply {
    Reply::error(format!(
        "ERR strata: '{name}' is disabled; set security.allow_dangerous_commands: true to allow it"
    ))
}

/// `ERR unknown subcommand '<sub>'. Try <CMD> HELP.`
pub fn unknown_subcommand(command: &str, sub: &[u8]) -> Reply {
    let sub: String = String::from_utf8_lossy(sub).chars().take(128).collect();
    Reply::error(format!(
        "ERR unknown subcommand '{sub}'. Try {} HELP.",
        command.to_ascii_uppercase()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(args: &[&str]) -> Request {
        Request::from_args(args.iter().map(|a| a.as_bytes().to_vec()))
    }

    fn err_text(r: Reply) -> String {
        match r {
            Reply::Error(e) => String::from_utf8(e.to_vec()).unwrap(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn unknown_and_arity_texts_match_redis() {
        assert_eq!(
            err_text(classify(&req(&["foo", "a", "b"]), false).unwrap_err()),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            err_text(classify(&req(&["foo"]), false).unwrap_err()),
            "ERR unknown command 'foo', with args beginning with: "
        );
        assert_eq!(
            err_text(classify(&req(&["GET"]), false).unwrap_err()),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(classify(&req(&["GET", "k"]), false).unwrap().name, "get");
    }

    #[test]
    fn unsupported_and_dangerous() {
        assert_eq!(
            err_text(classify(&req(&["monitor"]), false).unwrap_err()),
            "ERR strata: 'monitor' is not supported through the proxy"
        );
        assert!(err_text(classify(&req(&["FLUSHALL"]), false).unwrap_err())
            .contains("allow_dangerous_commands"));
        assert!(classify(&req(&["FLUSHALL"]), true).is_ok());
        assert!(classify(&req(&["KEYS", "*"]), true).is_ok());
        assert!(classify(&req(&["XREAD", "COUNT", "1", "STREAMS", "s", "0"]), false).is_ok());
        // With BLOCK it is accepted too; dispatch runs it on a dedicated connection.
        let blocking = req(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
        assert!(classify(&blocking, false).is_ok());
        assert!(has_block_option(&blocking));
        assert!(!has_block_option(&req(&["XREAD", "STREAMS", "BLOCK", "0"])));
    }
}
