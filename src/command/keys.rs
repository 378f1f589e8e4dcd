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
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::command::spec::Route;
    use crate::command::table::lookup;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// Key positions of a request written as one string, using the table's spec.
    fn keys(request: &str) -> Result<Vec<usize>, KeyError> {
        let argv = args(&request.split(' ').collect::<Vec<_>>());
        let spec = lookup(&argv[0]).unwrap();
        let mut out = vec![99, 98];
        let result = key_positions(spec, &argv, &mut out);
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                assert!(out.is_empty(), "out not cleared on error");
                Err(e)
            }
        }
    }

    fn bad(text: &'static str) -> Result<Vec<usize>, KeyError> {
        Err(KeyError::BadNumKeys(text))
    }

    fn custom(keys: KeySpec) -> CommandSpec {
        CommandSpec {
            name: "custom",
            arity: -1,
            flags: 0,
            first_key: 0,
            last_key: 0,
            step: 0,
            keys,
            route: Route::SameNode,
        }
    }

    fn custom_keys(keys: KeySpec, words: &[&str]) -> Result<Vec<usize>, KeyError> {
        let mut out = Vec::new();
        key_positions(&custom(keys), &args(words), &mut out).map(|()| out)
    }

    #[test]
    fn none() {
        assert_eq!(keys("ping"), Ok(vec![]));
        assert_eq!(keys("echo hello"), Ok(vec![]));
        assert_eq!(keys("keys *"), Ok(vec![]));
    }

    #[test]
    fn range() {
        assert_eq!(keys("get k"), Ok(vec![1]));
        assert_eq!(keys("set k v EX 10"), Ok(vec![1]));
        assert_eq!(keys("mget a b c"), Ok(vec![1, 2, 3]));
        assert_eq!(keys("del a"), Ok(vec![1]));
        assert_eq!(keys("mset a 1 b 2 c 3"), Ok(vec![1, 3, 5]));
        assert_eq!(keys("msetnx a 1 b 2"), Ok(vec![1, 3]));
        assert_eq!(keys("rename a b"), Ok(vec![1, 2]));
        assert_eq!(keys("smove a b m"), Ok(vec![1, 2]));
        assert_eq!(keys("lmove a b LEFT RIGHT"), Ok(vec![1, 2]));
        assert_eq!(keys("bitop AND d a b"), Ok(vec![2, 3, 4]));
        assert_eq!(keys("pfmerge d a b"), Ok(vec![1, 2, 3]));
        assert_eq!(keys("blpop a b 0"), Ok(vec![1, 2]));
        assert_eq!(keys("brpoplpush a b 0"), Ok(vec![1, 2]));
        assert_eq!(keys("sort_ro k BY w_* GET # STORE x"), Ok(vec![1]));
    }

    #[test]
    fn range_never_goes_out_of_bounds() {
        let spec = KeySpec::Range {
            first: 1,
            last: 3,
            step: 1,
        };
        assert_eq!(custom_keys(spec, &["x", "a"]), Ok(vec![1]));
        assert_eq!(custom_keys(spec, &["x"]), Ok(vec![]));
        assert_eq!(custom_keys(spec, &[]), Ok(vec![]));
        // Odd MSET: the trailing key without a value is still inside the arguments.
        assert_eq!(keys("mset a 1 b"), Ok(vec![1, 3]));
        let from_end = KeySpec::Range {
            first: 1,
            last: -2,
            step: 1,
        };
        assert_eq!(custom_keys(from_end, &["x"]), Ok(vec![]));
        assert_eq!(custom_keys(from_end, &["x", "a"]), Ok(vec![]));
        assert_eq!(custom_keys(from_end, &["x", "a", "t"]), Ok(vec![1]));
        let far = KeySpec::Range {
            first: 5,
            last: -1,
            step: 1,
        };
        assert_eq!(custom_keys(far, &["x", "a", "b"]), Ok(vec![]));
        let huge_step = KeySpec::Range {
            first: 1,
            last: -1,
            step: usize::MAX,
        };
        assert_eq!(custom_keys(huge_step, &["x", "a", "b"]), Ok(vec![1]));
        let zero_step = KeySpec::Range {
            first: 1,
            last: -1,
            step: 0,
        };
        assert_eq!(custom_keys(zero_step, &["x", "a", "b"]), Ok(vec![1, 2]));
        let no_first = KeySpec::Range {
            first: 0,
            last: 0,
            step: 0,
        };
        assert_eq!(custom_keys(no_first, &["x", "a"]), Ok(vec![]));
    }

    #[test]
    fn numkeys_eval_family() {
        assert_eq!(keys("eval s 0"), Ok(vec![]));
        assert_eq!(keys("eval s 0 a b"), Ok(vec![]));
        assert_eq!(keys("eval s 2 a b c"), Ok(vec![3, 4]));
        assert_eq!(keys("evalsha s 1 a"), Ok(vec![3]));
        assert_eq!(keys("EVAL_RO s 1 a"), Ok(vec![3]));
        assert_eq!(keys("fcall f 2 a b"), Ok(vec![3, 4]));
        assert_eq!(keys("fcall_ro f 0"), Ok(vec![]));

        let too_many = "ERR Number of keys can't be greater than number of args";
        let negative = "ERR Number of keys can't be negative";
        let not_int = "ERR value is not an integer or out of range";
        assert_eq!(keys("eval s 3 a b"), bad(too_many));
        assert_eq!(keys("eval s 1"), bad(too_many));
        assert_eq!(keys("eval s 1000000000000000000 a"), bad(too_many));
        assert_eq!(keys("eval s -1"), bad(negative));
        assert_eq!(keys("evalsha_ro s -5 a"), bad(negative));
        assert_eq!(keys("eval s abc"), bad(not_int));
        assert_eq!(keys("eval s +1 a"), bad(not_int));
        assert_eq!(keys("eval s -0"), bad(not_int));
        assert_eq!(keys("eval s 99999999999999999999 a"), bad(not_int));
        assert_eq!(keys("eval s -99999999999999999999 a"), bad(not_int));

        let fcall_not_int = "ERR Bad number of keys provided";
        assert_eq!(keys("fcall f x"), bad(fcall_not_int));
        assert_eq!(keys("fcall_ro f -1"), bad(negative));
        assert_eq!(keys("fcall f 5 a"), bad(too_many));
    }

    #[test]
    fn numkeys_sorted_set_family() {
        assert_eq!(keys("zunionstore d 2 a b"), Ok(vec![1, 3, 4]));
        assert_eq!(keys("zinterstore d 1 a WEIGHTS 2"), Ok(vec![1, 3]));
        assert_eq!(keys("zdiffstore d 2 a b"), Ok(vec![1, 3, 4]));
        assert_eq!(keys("zunion 2 a b WITHSCORES"), Ok(vec![2, 3]));
        assert_eq!(keys("zinter 1 a"), Ok(vec![2]));
        assert_eq!(keys("zdiff 2 a b"), Ok(vec![2, 3]));
        assert_eq!(keys("zintercard 2 a b LIMIT 5"), Ok(vec![2, 3]));

        let not_int = "ERR value is not an integer or out of range";
        assert_eq!(
            keys("zunionstore d 0 a"),
            bad("ERR at least 1 input key is needed for 'zunionstore' command")
        );
        assert_eq!(
            keys("zinterstore d -1 a"),
            bad("ERR at least 1 input key is needed for 'zinterstore' command")
        );
        assert_eq!(
            keys("zunion 0 a"),
            bad("ERR at least 1 input key is needed for 'zunion' command")
        );
        assert_eq!(
            keys("zintercard 0 a"),
            bad("ERR at least 1 input key is needed for 'zintercard' command")
        );
        assert_eq!(keys("zdiffstore d x a"), bad(not_int));
        assert_eq!(keys("zinter 01x a"), bad(not_int));
        assert_eq!(keys("zunionstore d 3 a"), bad("ERR syntax error"));
        assert_eq!(keys("zdiff 2 a"), bad("ERR syntax error"));
        assert_eq!(
            keys("zunion 1000000000000000000 a"),
            bad("ERR syntax error")
        );
    }

    #[test]
    fn numkeys_sintercard_and_mpop() {
        assert_eq!(keys("sintercard 2 a b LIMIT 3"), Ok(vec![2, 3]));
        assert_eq!(keys("lmpop 2 a b LEFT COUNT 2"), Ok(vec![2, 3]));
        assert_eq!(keys("zmpop 1 a MIN"), Ok(vec![2]));
        assert_eq!(keys("blmpop 0 2 a b LEFT"), Ok(vec![3, 4]));
        assert_eq!(keys("bzmpop 1.5 1 a MAX"), Ok(vec![3]));

        let not_positive = "ERR numkeys should be greater than 0";
        for request in [
            "sintercard 0 a",
            "sintercard -1 a",
            "sintercard x a",
            "lmpop 0 a LEFT",
            "lmpop x a LEFT",
            "zmpop -1 a MIN",
            "blmpop 0 0 a LEFT",
            "bzmpop 0 x a MIN",
        ] {
            assert_eq!(keys(request), bad(not_positive), "{request}");
        }
        assert_eq!(
            keys("sintercard 3 a"),
            bad("ERR Number of keys can't be greater than number of args")
        );
        assert_eq!(keys("lmpop 4 a LEFT"), bad("ERR syntax error"));
        assert_eq!(keys("bzmpop 0 9 a MIN"), bad("ERR syntax error"));
    }

    #[test]
    fn numkeys_custom_and_missing_count() {
        let spec = KeySpec::NumKeys {
            fixed: &[1, 2],
            numkeys_at: 3,
        };
        assert_eq!(
            custom_keys(spec, &["x", "a", "b", "2", "c", "d"]),
            Ok(vec![1, 2, 4, 5])
        );
        assert_eq!(
            custom_keys(spec, &["x", "a", "b"]),
            bad("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            custom_keys(spec, &["x", "a", "b", "3", "c"]),
            bad("ERR syntax error")
        );
    }

    #[test]
    fn bad_count_classification() {
        assert_eq!(classify_bad_count(b"-1"), BadCount::Negative);
        assert_eq!(
            classify_bad_count(b"-9223372036854775808"),
            BadCount::Negative
        );
        assert_eq!(
            classify_bad_count(b"-9223372036854775809"),
            BadCount::NotInteger
        );
        assert_eq!(classify_bad_count(b"9223372036854775807"), BadCount::Huge);
        assert_eq!(
            classify_bad_count(b"9223372036854775808"),
            BadCount::NotInteger
        );
        assert_eq!(classify_bad_count(b""), BadCount::NotInteger);
        assert_eq!(classify_bad_count(b"-"), BadCount::NotInteger);
        assert_eq!(classify_bad_count(b" 1"), BadCount::NotInteger);
        assert_eq!(classify_bad_count(b"1.5"), BadCount::NotInteger);
        assert_eq!(classify_bad_count(b"0x10"), BadCount::NotInteger);
    }

    #[test]
    fn streams() {
        assert_eq!(keys("xread STREAMS a 0"), Ok(vec![2]));
        assert_eq!(
            keys("xread COUNT 2 BLOCK 0 streams a b 0 0"),
            Ok(vec![6, 7])
        );
        assert_eq!(
            keys("xreadgroup GROUP g c COUNT 1 NOACK STREAMS a b > >"),
            Ok(vec![8, 9])
        );
        // A group and consumer named like the keyword.
        assert_eq!(
            keys("xreadgroup GROUP streams streams STREAMS streams >"),
            Ok(vec![5])
        );
        // A stream key named "streams".
        assert_eq!(keys("xread STREAMS streams 0"), Ok(vec![2]));

        assert_eq!(keys("xread COUNT 1 a 0"), Err(KeyError::BadStreams));
        assert_eq!(keys("xread STREAMS a b 0"), Err(KeyError::BadStreams));
        assert_eq!(keys("xread COUNT 5 STREAMS"), Err(KeyError::BadStreams));
        assert_eq!(keys("xread BLOCK STREAMS a 0"), Err(KeyError::BadStreams));
        assert_eq!(
            custom_keys(KeySpec::Streams, &["xread"]),
            Err(KeyError::BadStreams)
        );
        assert_eq!(
            custom_keys(KeySpec::Streams, &[]),
            Err(KeyError::BadStreams)
        );
    }

    #[test]
    fn key_and_store() {
        assert_eq!(keys("sort k"), Ok(vec![1]));
        assert_eq!(keys("sort k STORE d"), Ok(vec![1, 3]));
        assert_eq!(keys("sort k LIMIT 0 10 ALPHA store d"), Ok(vec![1, 7]));
        // The last STORE wins; patterns named "store" are not keywords.
        assert_eq!(keys("sort k STORE a STORE b"), Ok(vec![1, 5]));
        assert_eq!(keys("sort k GET store GET # STORE d"), Ok(vec![1, 7]));
        assert_eq!(keys("sort k BY store"), Ok(vec![1]));
        // STORE as the last argument has no key after it.
        assert_eq!(keys("sort k STORE"), Ok(vec![1]));

        assert_eq!(keys("georadius g 0 0 10 km"), Ok(vec![1]));
        assert_eq!(keys("georadius g 0 0 10 km STORE d"), Ok(vec![1, 7]));
        assert_eq!(
            keys("georadius g 0 0 10 km COUNT 3 StoreDist d"),
            Ok(vec![1, 9])
        );
        assert_eq!(keys("georadiusbymember g m 10 km STORE d"), Ok(vec![1, 6]));
        // A member called "store" is not the keyword.
        assert_eq!(keys("georadiusbymember g store 10 km"), Ok(vec![1]));
        assert_eq!(
            keys("georadiusbymember g store 10 km storedist d"),
            Ok(vec![1, 6])
        );

        assert_eq!(custom_keys(KeySpec::KeyAndStore, &["sort"]), Ok(vec![]));
    }

    #[test]
    fn subcommand_key() {
        assert_eq!(keys("object encoding k"), Ok(vec![2]));
        assert_eq!(keys("object help"), Ok(vec![]));
        assert_eq!(keys("xinfo stream k FULL"), Ok(vec![2]));
        assert_eq!(keys("xgroup create k g $"), Ok(vec![2]));
        assert_eq!(keys("memory usage k SAMPLES 5"), Ok(vec![2]));
        assert_eq!(keys("memory doctor"), Ok(vec![]));
        assert_eq!(custom_keys(KeySpec::SubcommandKey, &["object"]), Ok(vec![]));
    }

    #[test]
    fn out_is_cleared_and_reused() {
        let spec = lookup(b"mget").unwrap();
        let mut out = vec![7, 8, 9];
        key_positions(spec, &args(&["mget", "a"]), &mut out).unwrap();
        assert_eq!(out, vec![1]);
        let ping = lookup(b"ping").unwrap();
        key_positions(ping, &args(&["ping"]), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn every_table_entry_survives_minimal_arguments() {
        // No spec panics, whatever (short or empty) arguments it is given.
        let mut out = Vec::new();
        for spec in crate::command::table::COMMANDS {
            for n in 0..6 {
                let argv: Vec<Bytes> = (0..n).map(|_| Bytes::from_static(b"1")).collect();
                let _ = key_positions(spec, &argv, &mut out);
                assert!(out.iter().all(|&i| i < argv.len()), "{}", spec.name);
            }
        }
    }
}
