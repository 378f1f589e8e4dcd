//! Unit tests of `keys`: key positions for every kind of key spec, and their errors.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
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
