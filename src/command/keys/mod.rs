//! Key extraction: the argument indexes of every key of a request, worked out from its [`KeySpec`].
//!
//! The caller has checked the arity already, but nothing here indexes out of bounds whatever the
//! arguments are. Errors carry Redis 7.0's own reply text, so a malformed request gets the same
//! answer through strata as from a Redis server.

use bytes::Bytes;

use crate::command::spec::{parse_count, CommandSpec, KeyError, KeySpec};

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX_ERROR: &str = "ERR syntax error";
const NEGATIVE: &str = "ERR Number of keys can't be negative";
const MORE_THAN_ARGS: &str = "ERR Number of keys can't be greater than number of args";
const NOT_POSITIVE: &str = "ERR numkeys should be greater than 0";

/// Redis's replies for a bad numkeys argument, which differ from one command family to another.
struct NumKeysErrors {
    /// The count is not an integer (or does not fit in 64 bits).
    not_integer: &'static str,
    /// The count is a negative integer.
    negative: &'static str,
    /// The count is zero; `None` when zero keys are fine (EVAL, FCALL).
    zero: Option<&'static str>,
    /// The count is larger than the arguments that follow it.
    too_many: &'static str,
}

impl NumKeysErrors {
    /// Replies where a count below one is an error: `below_one` for zero and negative counts.
    const fn at_least_one(
        not_integer: &'static str,
        below_one: &'static str,
        too_many: &'static str,
    ) -> Self {
        NumKeysErrors {
            not_integer,
            negative: below_one,
            zero: Some(below_one),
            too_many,
        }
    }
}

/// The replies of Redis 7.0 for the command called `name` (lower case, as in the table).
fn numkeys_errors(name: &str) -> NumKeysErrors {
    let at_least_one =
        |below_one| NumKeysErrors::at_least_one(NOT_AN_INTEGER, below_one, SYNTAX_ERROR);
    match name {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => NumKeysErrors {
            not_integer: NOT_AN_INTEGER,
            negative: NEGATIVE,
            zero: None,
            too_many: MORE_THAN_ARGS,
        },
        "fcall" | "fcall_ro" => NumKeysErrors {
            not_integer: "ERR Bad number of keys provided",
            negative: NEGATIVE,
            zero: None,
            too_many: MORE_THAN_ARGS,
        },
        "zunionstore" => {
            at_least_one("ERR at least 1 input key is needed for 'zunionstore' command")
        }
        "zinterstore" => {
            at_least_one("ERR at least 1 input key is needed for 'zinterstore' command")
        }
        "zdiffstore" => at_least_one("ERR at least 1 input key is needed for 'zdiffstore' command"),
        "zunion" => at_least_one("ERR at least 1 input key is needed for 'zunion' command"),
        "zinter" => at_least_one("ERR at least 1 input key is needed for 'zinter' command"),
        "zdiff" => at_least_one("ERR at least 1 input key is needed for 'zdiff' command"),
        "zintercard" => at_least_one("ERR at least 1 input key is needed for 'zintercard' command"),
        "sintercard" => NumKeysErrors::at_least_one(NOT_POSITIVE, NOT_POSITIVE, MORE_THAN_ARGS),
        // LMPOP, ZMPOP, BLMPOP, BZMPOP, and any other numkeys command.
        _ => NumKeysErrors::at_least_one(NOT_POSITIVE, NOT_POSITIVE, SYNTAX_ERROR),
    }
}

/// What a numkeys argument that [`parse_count`] refused is, to Redis (`string2ll`).
#[derive(Debug, PartialEq, Eq)]
enum BadCount {
    /// Not an integer at all, or out of the 64-bit range.
    NotInteger,
    /// A negative integer.
    Negative,
    /// A positive integer too large for any request.
    Huge,
}

fn classify_bad_count(arg: &[u8]) -> BadCount {
    let digits = match arg.split_first() {
        Some((b'-', rest)) => rest,
        _ => arg,
    };
    // string2ll: no '+', no leading zero, no "-0", digits only.
    let well_formed =
        matches!(digits.first(), Some(b'1'..=b'9')) && digits.iter().all(u8::is_ascii_digit);
    if !well_formed {
        return BadCount::NotInteger;
    }
    match std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        None => BadCount::NotInteger,
        Some(n) if n < 0 => BadCount::Negative,
        Some(_) => BadCount::Huge,
    }
}

/// Clears `out` and pushes the index of every key of the request `args` (`args[0]` is the
/// command name), in argument order except that a `STORE` destination comes last.
///
/// * `Range`: `first`, `first + step`, ... up to `last` (negative: counted from the end).
/// * `NumKeys`: the fixed positions, then the `numkeys` arguments after the count. A count that
///   is not a number, is below one (where Redis wants at least one key) or exceeds the arguments
///   left is [`KeyError::BadNumKeys`] with Redis's reply for that command.
/// * `Streams`: the first half of the arguments after the `STREAMS` keyword (options `BLOCK`,
///   `COUNT` and `GROUP` are skipped with their arguments, so a group or consumer named
///   "streams" is not mistaken for the keyword); missing keyword, nothing after it or an odd
///   count is [`KeyError::BadStreams`].
/// * `KeyAndStore`: 1, plus the argument after the last `STORE`/`STOREDIST` token. For SORT the
///   scan starts at 2 and skips the arguments of `LIMIT`, `GET` and `BY`; for GEORADIUS* it
///   starts at 5, after the fixed arguments (a member may be called "store").
/// * `SubcommandKey`: 2 when there are at least 3 arguments.
///
/// On error `out` is left empty.
pub fn key_positions(
    spec: &CommandSpec,
    args: &[Bytes],
    out: &mut Vec<usize>,
) -> Result<(), KeyError> {
    out.clear();
    let result = match spec.keys {
        KeySpec::None => Ok(()),
        KeySpec::Range { first, last, step } => {
            range_keys(args.len(), first, last, step, out);
            Ok(())
        }
        KeySpec::NumKeys { fixed, numkeys_at } => {
            numkeys_keys(spec.name, fixed, numkeys_at, args, out)
        }
        KeySpec::Streams => streams_keys(args, out),
        KeySpec::KeyAndStore => {
            key_and_store_keys(spec.name, args, out);
            Ok(())
        }
        KeySpec::SubcommandKey => {
            if args.len() >= 3 {
                out.push(2);
            }
            Ok(())
        }
    };
    if result.is_err() {
        out.clear();
    }
    result
}

fn range_keys(argc: usize, first: usize, last: isize, step: usize, out: &mut Vec<usize>) {
    if first == 0 {
        return;
    }
    let last = if last < 0 {
        // argc is a slice length, so it fits in isize.
        argc as isize + last
    } else {
        last
    };
    let Ok(last) = usize::try_from(last) else {
        return;
    };
    let end = last.min(argc.saturating_sub(1));
    let step = step.max(1);
    let mut i = first;
    while i <= end {
        out.push(i);
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
}

fn numkeys_keys(
    name: &str,
    fixed: &[usize],
    numkeys_at: usize,
    args: &[Bytes],
    out: &mut Vec<usize>,
) -> Result<(), KeyError> {
    let errors = numkeys_errors(name);
    let Some(count_arg) = args.get(numkeys_at) else {
        return Err(KeyError::BadNumKeys(errors.not_integer));
    };
    // Arguments after the count: the most keys there can be.
    let available = args.len() - numkeys_at - 1;
    let numkeys = match parse_count(count_arg) {
        Some(0) => match errors.zero {
            Some(text) => return Err(KeyError::BadNumKeys(text)),
            None => 0,
        },
        Some(n) => n,
        None => {
            let text = match classify_bad_count(count_arg) {
                BadCount::NotInteger => errors.not_integer,
                BadCount::Negative => errors.negative,
                BadCount::Huge => errors.too_many,
            };
            return Err(KeyError::BadNumKeys(text));
        }
    };
    if numkeys > available {
        return Err(KeyError::BadNumKeys(errors.too_many));
    }
    out.extend(fixed.iter().copied().filter(|&i| i < args.len()));
    out.extend(numkeys_at + 1..=numkeys_at + numkeys);
    Ok(())
}

fn streams_keys(args: &[Bytes], out: &mut Vec<usize>) -> Result<(), KeyError> {
    let mut i = 1;
    let streams_at = loop {
        let Some(arg) = args.get(i) else {
            return Err(KeyError::BadStreams);
        };
        let arg: &[u8] = arg;
        if arg.eq_ignore_ascii_case(b"streams") {
            break i;
        }
        i += if arg.eq_ignore_ascii_case(b"block") || arg.eq_ignore_ascii_case(b"count") {
            2
        } else if arg.eq_ignore_ascii_case(b"group") {
            3
        } else {
            // NOACK, or something Redis will refuse anyway.
            1
        };
    };
    let rest = args.len() - streams_at - 1;
    if rest == 0 || rest % 2 == 1 {
        return Err(KeyError::BadStreams);
    }
    out.extend(streams_at + 1..=streams_at + rest / 2);
    Ok(())
}

fn key_and_store_keys(name: &str, args: &[Bytes], out: &mut Vec<usize>) {
    if args.len() < 2 {
        return;
    }
    out.push(1);
    let geo = name.starts_with("georadius");
    let mut store = None;
    let mut i = if geo { 5 } else { 2 };
    while let Some(arg) = args.get(i) {
        let arg: &[u8] = arg;
        if arg.eq_ignore_ascii_case(b"store") || arg.eq_ignore_ascii_case(b"storedist") {
            if i + 1 < args.len() {
                store = Some(i + 1);
            }
            i += 2;
        } else if !geo && arg.eq_ignore_ascii_case(b"limit") {
            i += 3;
        } else if !geo && (arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by")) {
            i += 2;
        } else {
            i += 1;
        }
    }
    if let Some(store) = store {
        out.push(store);
    }
}

#[cfg(test)]
mod tests;
