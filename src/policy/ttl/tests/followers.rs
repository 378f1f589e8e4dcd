//! Unit tests of `ttl` for RESTORE, multi-key writes and their TTL followers, STORE options,
//! layers without rules, and malformed input.

use super::*;

#[test]
fn restore() {
    assert_eq!(
        run(&["RESTORE", "sess:1", "0", "payload"]),
        rewritten_to(&["RESTORE", "sess:1", "60000", "payload"], 1)
    );
    assert_eq!(
        run(&["RESTORE", "sess:1", "0", "payload", "absttl", "REPLACE", "IDLETIME", "5"]),
        rewritten_to(
            &["RESTORE", "sess:1", "60000", "payload", "REPLACE", "IDLETIME", "5"],
            1
        )
    );
    assert_eq!(
        run(&["RESTORE", "sess:1", "3600000", "payload", "FREQ", "3"]),
        rewritten_to(&["RESTORE", "sess:1", "600000", "payload", "FREQ", "3"], 1)
    );
    let in_an_hour = (NOW + 3_600_000).to_string();
    assert_eq!(
        run(&["RESTORE", "sess:1", &in_an_hour, "payload", "AbsTtl"]),
        rewritten_to(&["RESTORE", "sess:1", "600000", "payload"], 1)
    );
    let in_a_minute = (NOW + 60_000).to_string();
    assert_eq!(
        run(&["RESTORE", "sess:1", &in_a_minute, "payload", "ABSTTL"]),
        unchanged()
    );
    let past = (NOW - 60_000).to_string();
    assert_eq!(
        run(&["RESTORE", "sess:1", &past, "payload", "ABSTTL"]),
        unchanged()
    );
    assert_eq!(run(&["RESTORE", "sess:1", "1000", "payload"]), unchanged());
    assert_eq!(
        run(&["RESTORE", "tmp:1", "99999999", "payload"]),
        unchanged()
    );
    assert_eq!(run(&["RESTORE", "other", "0", "payload"]), unchanged());
    for args in [
        &["RESTORE", "sess:1", "0"][..],
        &["RESTORE", "sess:1", "-1", "payload"],
        &["RESTORE", "sess:1", "x", "payload"],
        &["RESTORE", "sess:1", "0", "payload", "BOGUS"],
        &["RESTORE", "sess:1", "0", "payload", "IDLETIME"],
        &["RESTORE", "sess:1", "0", "payload", "IDLETIME", "-1"],
        &["RESTORE", "sess:1", "0", "payload", "FREQ", "256"],
        &[
            "RESTORE", "sess:1", "0", "payload", "IDLETIME", "1", "FREQ", "1",
        ],
    ] {
        assert_eq!(run(args), unchanged(), "{args:?}");
    }
}

#[test]
fn restore_keeps_a_payload_spelled_absttl() {
    // Only ABSTTL options go, not an argument that happens to read "ABSTTL".
    assert_eq!(
        run(&["RESTORE", "sess:1", "0", "ABSTTL", "ABSTTL"]),
        rewritten_to(&["RESTORE", "sess:1", "60000", "ABSTTL"], 1)
    );
}

#[test]
fn mset_follows_each_distinct_key_of_a_ttl_layer() {
    assert_eq!(
        run(&["MSET", "sess:a", "1", "other:x", "2", "sess:b", "3", "sess:a", "4", "tmp:c", "5",]),
        followed_by(&[("sess:a", 60_000), ("sess:b", 60_000), ("tmp:c", 30_000)])
    );
    assert_eq!(
        run(&["msetnx", "cap:a", "1", "other:b", "2"]),
        followed_by(&[("cap:a", 600_000)])
    );
    assert_eq!(run(&["MSET", "other:a", "1", "other:b", "2"]), unchanged());
    assert_eq!(run(&["MSET", "sess:a", "1", "sess:b"]), unchanged());
    assert_eq!(run(&["MSET"]), unchanged());
}

#[test]
fn first_key_and_destination_followers() {
    assert_eq!(run(&["INCR", "sess:n"]), followed_by(&[("sess:n", 60_000)]));
    assert_eq!(
        run(&["HSET", "tmp:h", "f", "v"]),
        followed_by(&[("tmp:h", 30_000)])
    );
    assert_eq!(
        run(&["SETNX", "sess:1", "v"]),
        followed_by(&[("sess:1", 60_000)])
    );
    assert_eq!(
        run(&["ZUNIONSTORE", "sess:z", "2", "other:a", "other:b"]),
        followed_by(&[("sess:z", 60_000)])
    );
    assert_eq!(
        run(&["SMOVE", "other:src", "sess:dst", "m"]),
        followed_by(&[("sess:dst", 60_000)])
    );
    assert_eq!(
        run(&["COPY", "other:a", "tmp:b", "REPLACE"]),
        followed_by(&[("tmp:b", 30_000)])
    );
    assert_eq!(
        run(&["BITOP", "AND", "sess:d", "other:a", "other:b"]),
        followed_by(&[("sess:d", 60_000)])
    );
    assert_eq!(
        run(&["LMOVE", "other:a", "sess:b", "LEFT", "RIGHT"]),
        followed_by(&[("sess:b", 60_000)])
    );
    // The source's layer does not matter, only the destination's.
    assert_eq!(run(&["RENAME", "sess:a", "other:b"]), unchanged());
    assert_eq!(run(&["INCR", "other:n"]), unchanged());
    // Too few arguments: Redis refuses, nothing is created.
    assert_eq!(run(&["SMOVE", "other:src", "sess:dst"]), unchanged());
    assert_eq!(run(&["HSET", "sess:h", "f"]), unchanged());
    // Commands that only touch existing keys have no rule.
    assert_eq!(run(&["LPUSHX", "sess:l", "v"]), unchanged());
    assert_eq!(run(&["LINSERT", "sess:l", "BEFORE", "a", "b"]), unchanged());
}

#[test]
fn store_options() {
    assert_eq!(
        run(&[
            "SORT",
            "other:list",
            "BY",
            "w_*",
            "LIMIT",
            "0",
            "10",
            "GET",
            "store",
            "STORE",
            "sess:out",
        ]),
        followed_by(&[("sess:out", 60_000)])
    );
    assert_eq!(run(&["SORT", "sess:list", "DESC"]), unchanged());
    assert_eq!(run(&["SORT", "other:list", "STORE"]), unchanged());
    assert_eq!(
        run(&[
            "GEORADIUS",
            "other:g",
            "15",
            "37",
            "200",
            "km",
            "COUNT",
            "5",
            "storedist",
            "tmp:d"
        ]),
        followed_by(&[("tmp:d", 30_000)])
    );
    assert_eq!(
        run(&[
            "GEORADIUSBYMEMBER",
            "other:g",
            "m",
            "200",
            "km",
            "STORE",
            "sess:d"
        ]),
        followed_by(&[("sess:d", 60_000)])
    );
    // A member named "store" is not the option.
    assert_eq!(
        run(&["GEORADIUSBYMEMBER", "other:g", "store", "sess:x", "km"]),
        unchanged()
    );
}

#[test]
fn xgroup_create_mkstream() {
    assert_eq!(
        run(&["XGROUP", "create", "sess:st", "g", "$", "mkstream"]),
        followed_by(&[("sess:st", 60_000)])
    );
    assert_eq!(run(&["XGROUP", "CREATE", "sess:st", "g", "$"]), unchanged());
    assert_eq!(
        run(&["XGROUP", "CREATE", "sess:st", "mkstream", "$"]),
        unchanged()
    );
    assert_eq!(
        run(&["XGROUP", "DESTROY", "sess:st", "MKSTREAM"]),
        unchanged()
    );
}

#[test]
fn layer_without_rules_gets_nothing() {
    for args in [
        &["SET", "other:1", "v"][..],
        &["SET", "other:1", "v", "KEEPTTL"],
        &["SET", "other:1", "v", "EX", "99999999"],
        &["SETEX", "other:1", "99999999", "v"],
        &["GETEX", "other:1", "PERSIST"],
        &["EXPIRE", "other:1", "99999999"],
        &["PERSIST", "other:1"],
        &["RESTORE", "other:1", "0", "p"],
        &["MSET", "other:1", "v"],
        &["APPEND", "other:1", "v"],
    ] {
        assert_eq!(run(args), unchanged(), "{args:?}");
    }
}

#[test]
fn layer_names_may_borrow_from_the_caller() {
    let name = String::from("borrowed");
    let limits = |_: &[u8]| TtlLimits {
        layer: name.as_str(),
        ttl_ms: Some(1_000),
        max_ttl_ms: Some(2_000),
    };
    assert_eq!(
        apply("persist", &bytes(&["PERSIST", "k"]), &limits, NOW),
        Err(
            "ERR strata: PERSIST is not allowed in layer 'borrowed': its keys must \
             expire within max_ttl 2s"
                .to_string()
        )
    );
}

#[test]
fn garbage_never_panics() {
    let names = [
        "set",
        "setex",
        "psetex",
        "getex",
        "expire",
        "pexpire",
        "expireat",
        "pexpireat",
        "persist",
        "restore",
        "setnx",
        "mset",
        "msetnx",
        "smove",
        "copy",
        "bitop",
        "sort",
        "georadius",
        "georadiusbymember",
        "xgroup",
        "zrangestore",
        "geosearchstore",
        "get",
    ];
    let words: Vec<Bytes> = [
        &b"sess:1"[..],
        b"\xff\xfe",
        b"",
        b"99999999999999999999",
        b"-9223372036854775808",
        b"9223372036854775807",
        b"0",
        b"EX",
        b"PXAT",
        b"KEEPTTL",
        b"PERSIST",
        b"ABSTTL",
        b"STORE",
        b"create",
        b"MKSTREAM",
        b"IDLETIME",
    ]
    .iter()
    .map(|w| Bytes::copy_from_slice(w))
    .collect();
    let clocks = [0, NOW, u64::MAX];
    for name in names {
        // Every argument list of up to 4 words after the name, from the words above.
        let mut lists: Vec<Vec<Bytes>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<Bytes>> = lists
                .iter()
                .filter(|l| l.len() == lists.last().unwrap().len())
                .flat_map(|l| {
                    words.iter().map(move |w| {
                        let mut l = l.clone();
                        l.push(w.clone());
                        l
                    })
                })
                .collect();
            lists.extend(longer);
        }
        for tail in &lists {
            let mut args = vec![Bytes::from(name)];
            args.extend(tail.iter().cloned());
            for now in clocks {
                let _ = apply(name, &args, &layers, now);
                let _ = apply(name, tail, &layers, now);
            }
        }
    }
    assert_eq!(apply("set", &[], &layers, NOW), unchanged());
    assert_eq!(
        apply(
            "set",
            &bytes(&["SET", "sess:1", "v", "EX", "99999999999999999999"]),
            &layers,
            NOW
        ),
        unchanged()
    );
    assert_eq!(
        apply(
            "expire",
            &bytes(&["EXPIRE", "sess:1", "9223372036854775"]),
            &layers,
            NOW
        ),
        unchanged()
    );
}
