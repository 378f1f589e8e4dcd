//! First step of every request: find the command in the table and check what can be checked
//! without a node (known command, arity, supported through the proxy, allowed by config).

use bytes::Bytes;

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

/// Redis's text for an unknown command: the name and the first arguments, at most 128 bytes
/// of them, each quoted and followed by a space. The bytes are the client's, as Redis writes
/// them (`%.128s`: cut at 128 bytes or at a NUL, not made valid UTF-8); CR and LF become
/// spaces when the reply is encoded.
pub fn unknown_command(request: &Request) -> Reply {
    let name = request.args.first().map(|n| n.as_ref()).unwrap_or_default();
    let mut text = Vec::with_capacity(64 + 2 * PRINTED);
    text.extend_from_slice(b"ERR unknown command '");
    text.extend_from_slice(printed(name, PRINTED));
    text.extend_from_slice(b"', with args beginning with: ");
    let start = text.len();
    for arg in request.args.iter().skip(1) {
        let used = text.len() - start;
        if used >= PRINTED {
            break;
        }
        text.push(b'\'');
        text.extend_from_slice(printed(arg, PRINTED - used));
        text.extend_from_slice(b"' ");
    }
    Reply::Error(Bytes::from(text))
}

/// How much of a client's argument Redis prints in an error.
const PRINTED: usize = 128;

/// What C's `%.<max>s` prints of `arg`, as Redis's error texts do: at most `max` bytes, and
/// nothing from the first NUL on.
fn printed(arg: &[u8], max: usize) -> &[u8] {
    let end = memchr::memchr(0, arg).unwrap_or(arg.len()).min(max);
    arg.get(..end).unwrap_or(arg)
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
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(printed(sub, PRINTED));
    text.extend_from_slice(b"'. Try ");
    text.extend_from_slice(command.to_ascii_uppercase().as_bytes());
    text.extend_from_slice(b" HELP.");
    Reply::Error(Bytes::from(text))
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

    fn err_bytes(r: Reply) -> Vec<u8> {
        match r {
            Reply::Error(e) => e.to_vec(),
            other => panic!("not an error: {other:?}"),
        }
    }

    /// Regression (tests/hostile_input.rs): the name and arguments went through
    /// `from_utf8_lossy` and were cut at 128 characters, so invalid UTF-8 came back as U+FFFD,
    /// a NUL and what followed it were echoed, and multi-byte text was cut late. The expected
    /// bytes are redis-server 7.0's replies to the same requests.
    #[test]
    fn unknown_command_texts_are_the_client_bytes_as_redis_prints_them() {
        let raw = |args: &[&[u8]]| Request::from_args(args.iter().map(|a| a.to_vec()));
        assert_eq!(
            err_bytes(unknown_command(&raw(&[b"FOO\xff", b"a\x00b", b"c"]))),
            b"ERR unknown command 'FOO\xff', with args beginning with: 'a' 'c' "
        );
        assert_eq!(
            err_bytes(unknown_command(&raw(&[b"PI\x00NG"]))),
            b"ERR unknown command 'PI', with args beginning with: "
        );
        // 128 bytes of the name; of the arguments, 128 bytes counting quotes and spaces.
        let long = "\u{e9}".repeat(100);
        let text = err_bytes(unknown_command(&raw(&[long.as_bytes(), long.as_bytes()])));
        let mut want = b"ERR unknown command '".to_vec();
        want.extend_from_slice(&long.as_bytes()[..128]);
        want.extend_from_slice(b"', with args beginning with: '");
        want.extend_from_slice(&long.as_bytes()[..128]);
        want.extend_from_slice(b"' ");
        assert_eq!(text, want);
        assert_eq!(
            err_bytes(unknown_subcommand("client", b"\xfex\x00y")),
            b"ERR unknown subcommand '\xfex'. Try CLIENT HELP."
        );
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
