//! Unit tests of `ttl`: the helpers, and the expiry rules of single-key writes (SET, SETEX,
//! GETEX, EXPIRE..., PERSIST); `followers.rs` has the rest.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

/// A fixed clock: 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000_000;
const NOW_S: u64 = NOW / 1000;

/// Layers by prefix: `sess:` has ttl 1m and max 10m, `cap:` only a max of 10m, `tmp:` only
/// a ttl of 30s, anything else no rule.
fn layers(key: &[u8]) -> TtlLimits<'static> {
    let (layer, ttl_ms, max_ttl_ms) = if key.starts_with(b"sess:") {
        ("sess", Some(60_000), Some(600_000))
    } else if key.starts_with(b"cap:") {
        ("cap", None, Some(600_000))
    } else if key.starts_with(b"tmp:") {
        ("tmp", Some(30_000), None)
    } else {
        ("default", None, None)
    };
    TtlLimits {
        layer,
        ttl_ms,
        max_ttl_ms,
    }
}

fn bytes(args: &[&str]) -> Vec<Bytes> {
    args.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

/// Runs the rules; arguments to append are folded into `args`, so expectations read as the
/// command the node receives.
fn run(args: &[&str]) -> Result<TtlPlan, String> {
    let request = bytes(args);
    apply(&args[0].to_ascii_lowercase(), &request, &layers, NOW).map(|mut plan| {
        if !plan.append.is_empty() {
            let mut full = plan.args.take().unwrap_or(request);
            full.append(&mut plan.append);
            plan.args = Some(full);
        }
        plan
    })
}

fn rewritten_to(args: &[&str], rewrites: u32) -> Result<TtlPlan, String> {
    Ok(TtlPlan {
        args: Some(bytes(args)),
        rewrites,
        ..TtlPlan::default()
    })
}

fn followed_by(keys: &[(&str, u64)]) -> Result<TtlPlan, String> {
    Ok(TtlPlan {
        args: None,
        followers: keys
            .iter()
            .map(|(key, ms)| bytes(&["PEXPIRE", key, &ms.to_string(), "NX"]))
            .collect(),
        ..TtlPlan::default()
    })
}

fn unchanged() -> Result<TtlPlan, String> {
    Ok(TtlPlan::default())
}

#[test]
fn limits_default_and_active() {
    let l = |ttl_ms, max_ttl_ms| TtlLimits {
        layer: "l",
        ttl_ms,
        max_ttl_ms,
    };
    assert_eq!(l(Some(60_000), Some(10_000)).default_ms(), Some(10_000));
    assert_eq!(l(Some(5_000), Some(10_000)).default_ms(), Some(5_000));
    assert_eq!(l(Some(5_000), None).default_ms(), Some(5_000));
    assert_eq!(l(None, Some(10_000)).default_ms(), Some(10_000));
    assert_eq!(l(None, None).default_ms(), None);
    assert_eq!(l(Some(0), Some(0)).default_ms(), None);
    assert!(l(Some(1), None).is_active());
    assert!(l(None, Some(1)).is_active());
    assert!(!l(None, None).is_active());
    assert!(!l(Some(0), Some(0)).is_active());
}

#[test]
fn parses_integers_like_redis() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"42"), Some(42));
    assert_eq!(parse_i64(b"-7"), Some(-7));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"+1",
        b" 1",
        b"1 ",
        b"01",
        b"-0",
        b"1.5",
        b"9223372036854775808",
        b"99999999999999999999",
        b"\xff",
    ] {
        assert_eq!(parse_i64(bad), None, "{bad:?}");
    }
}

#[test]
fn has_rule_names() {
    for name in [
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
        "incr",
        "hset",
        "mset",
        "msetnx",
        "smove",
        "copy",
        "bitop",
        "sort",
        "georadius",
        "xgroup",
        "pfmerge",
        "zrangestore",
    ] {
        assert!(has_rule(name), "{name}");
    }
    for name in [
        "get", "del", "linsert", "lpushx", "rpushx", "lset", "ttl", "sort_ro", "SET", "",
    ] {
        assert!(!has_rule(name), "{name}");
    }
}

#[test]
fn set_without_expiry_gains_default() {
    assert_eq!(
        run(&["SET", "sess:1", "v"]),
        rewritten_to(&["SET", "sess:1", "v", "PX", "60000"], 1)
    );
    // A layer with only a maximum: the maximum is the default.
    assert_eq!(
        run(&["set", "cap:1", "v"]),
        rewritten_to(&["set", "cap:1", "v", "PX", "600000"], 1)
    );
    assert_eq!(
        run(&["SET", "sess:1", "v", "nx", "GET"]),
        rewritten_to(&["SET", "sess:1", "v", "nx", "GET", "PX", "60000"], 1)
    );
}

#[test]
fn set_explicit_ttl_is_clamped_to_max() {
    assert_eq!(run(&["SET", "sess:1", "v", "EX", "600"]), unchanged());
    assert_eq!(run(&["SET", "sess:1", "v", "PX", "600000"]), unchanged());
    assert_eq!(
        run(&["SET", "sess:1", "v", "NX", "ex", "601", "GET"]),
        rewritten_to(&["SET", "sess:1", "v", "NX", "PX", "600000", "GET"], 1)
    );
    assert_eq!(
        run(&["SET", "sess:1", "v", "Px", "600001"]),
        rewritten_to(&["SET", "sess:1", "v", "PX", "600000"], 1)
    );
    // No max in the layer: explicit TTLs are kept.
    assert_eq!(run(&["SET", "tmp:1", "v", "EX", "999999"]), unchanged());
}

#[test]
fn set_absolute_expiry_is_compared_with_now() {
    let in_an_hour = (NOW_S + 3600).to_string();
    assert_eq!(
        run(&["SET", "sess:1", "v", "EXAT", &in_an_hour]),
        rewritten_to(&["SET", "sess:1", "v", "PX", "600000"], 1)
    );
    let in_a_minute = (NOW + 60_000).to_string();
    assert_eq!(
        run(&["SET", "sess:1", "v", "pxat", &in_a_minute]),
        unchanged()
    );
    let just_over = (NOW + 600_001).to_string();
    assert_eq!(
        run(&["SET", "sess:1", "v", "PXAT", &just_over, "XX"]),
        rewritten_to(&["SET", "sess:1", "v", "PX", "600000", "XX"], 1)
    );
    let past = (NOW_S - 10).to_string();
    assert_eq!(run(&["SET", "sess:1", "v", "EXAT", &past]), unchanged());
}

#[test]
fn set_repeated_expiry_option_clamps_the_effective_one() {
    // Redis uses the last of repeated options: a short first one must not hide a long one.
    assert_eq!(
        run(&["SET", "sess:1", "v", "EX", "1", "GET", "EX", "86400"]),
        rewritten_to(&["SET", "sess:1", "v", "GET", "PX", "600000"], 1)
    );
    assert_eq!(
        run(&["SET", "sess:1", "v", "EX", "86400", "EX", "1"]),
        unchanged()
    );
}

#[test]
fn set_keepttl() {
    assert_eq!(
        run(&["SET", "sess:1", "v", "KEEPTTL"]),
        Err(
            "ERR strata: KEEPTTL is not allowed in layer 'sess': its keys must expire \
             within max_ttl 10m"
                .to_string()
        )
    );
    assert_eq!(
        run(&["SET", "tmp:1", "v", "keepttl", "GET"]),
        followed_by(&[("tmp:1", 30_000)])
    );
    assert_eq!(run(&["SET", "other", "v", "KEEPTTL"]), unchanged());
}

#[test]
fn malformed_set_is_left_to_redis() {
    for args in [
        &["SET", "sess:1"][..],
        &["SET", "sess:1", "v", "EX"],
        &["SET", "sess:1", "v", "EX", "10", "PX", "10"],
        &["SET", "sess:1", "v", "EX", "9999", "PX", "10"],
        &["SET", "sess:1", "v", "BOGUS"],
        &["SET", "sess:1", "v", "NX", "XX"],
        &["SET", "sess:1", "v", "KEEPTTL", "EX", "10"],
        &["SET", "sess:1", "v", "EX", "9999", "KEEPTTL"],
        &["SET", "sess:1", "v", "PERSIST"],
        &["SET", "sess:1", "v", "EX", "abc"],
        &["SET", "sess:1", "v", "EX", "+9999"],
        &["SET", "sess:1", "v", "EX", "0"],
        &["SET", "sess:1", "v", "PX", "-5"],
        &["SET", "sess:1", "v", "EX", "99999999999999999999"],
        // Seconds overflowing in ms, ms overflowing once the clock is added: Redis refuses.
        &["SET", "sess:1", "v", "EX", "9223372036854775807"],
        &["SET", "sess:1", "v", "PX", "9223372036854775807"],
    ] {
        assert_eq!(run(args), unchanged(), "{args:?}");
    }
}

#[test]
fn setex_and_psetex_are_clamped() {
    assert_eq!(
        run(&["SETEX", "sess:1", "3600", "v"]),
        rewritten_to(&["PSETEX", "sess:1", "600000", "v"], 1)
    );
    assert_eq!(
        run(&["psetex", "cap:1", "600001", "v"]),
        rewritten_to(&["PSETEX", "cap:1", "600000", "v"], 1)
    );
    assert_eq!(run(&["SETEX", "sess:1", "600", "v"]), unchanged());
    assert_eq!(run(&["SETEX", "sess:1", "-1", "v"]), unchanged());
    assert_eq!(run(&["SETEX", "tmp:1", "3600", "v"]), unchanged());
    assert_eq!(run(&["SETEX", "sess:1", "3600"]), unchanged());
    assert_eq!(run(&["SETEX", "sess:1", "3600", "v", "x"]), unchanged());
}

#[test]
fn getex() {
    assert_eq!(
        run(&["GETEX", "sess:1", "EX", "3600"]),
        rewritten_to(&["GETEX", "sess:1", "PX", "600000"], 1)
    );
    assert_eq!(run(&["GETEX", "sess:1", "EX", "60"]), unchanged());
    assert_eq!(run(&["GETEX", "sess:1"]), unchanged());
    assert_eq!(
        run(&["GETEX", "cap:1", "persist"]),
        Err(
            "ERR strata: PERSIST is not allowed in layer 'cap': its keys must expire \
             within max_ttl 10m"
                .to_string()
        )
    );
    assert_eq!(run(&["GETEX", "tmp:1", "PERSIST"]), unchanged());
    // Syntax errors stay Redis's: SET-only options and conflicts.
    assert_eq!(
        run(&["GETEX", "sess:1", "PERSIST", "EX", "10"]),
        unchanged()
    );
    assert_eq!(run(&["GETEX", "sess:1", "KEEPTTL"]), unchanged());
    assert_eq!(run(&["GETEX", "sess:1", "NX", "EX", "3600"]), unchanged());
}

#[test]
fn expire_family_is_clamped() {
    assert_eq!(
        run(&["EXPIRE", "sess:1", "3600", "nx"]),
        rewritten_to(&["PEXPIRE", "sess:1", "600000", "nx"], 1)
    );
    assert_eq!(
        run(&["pexpire", "sess:1", "600001", "GT"]),
        rewritten_to(&["PEXPIRE", "sess:1", "600000", "GT"], 1)
    );
    assert_eq!(run(&["EXPIRE", "sess:1", "600"]), unchanged());
    assert_eq!(run(&["EXPIRE", "sess:1", "-1"]), unchanged());
    assert_eq!(run(&["EXPIRE", "tmp:1", "999999"]), unchanged());
    assert_eq!(run(&["EXPIRE", "sess:1", "3600", "NX", "XX"]), unchanged());
    assert_eq!(run(&["EXPIRE", "sess:1", "3600", "GT", "LT"]), unchanged());
    assert_eq!(run(&["EXPIRE", "sess:1", "3600", "bogus"]), unchanged());
    assert_eq!(run(&["EXPIRE", "sess:1"]), unchanged());

    let in_an_hour = (NOW_S + 3600).to_string();
    assert_eq!(
        run(&["EXPIREAT", "sess:1", &in_an_hour, "XX"]),
        rewritten_to(&["PEXPIRE", "sess:1", "600000", "XX"], 1)
    );
    let in_an_hour_ms = (NOW + 3_600_000).to_string();
    assert_eq!(
        run(&["PEXPIREAT", "sess:1", &in_an_hour_ms]),
        rewritten_to(&["PEXPIRE", "sess:1", "600000"], 1)
    );
    let in_five_minutes = (NOW_S + 300).to_string();
    assert_eq!(run(&["EXPIREAT", "sess:1", &in_five_minutes]), unchanged());
    let past = (NOW_S - 3600).to_string();
    assert_eq!(run(&["EXPIREAT", "sess:1", &past]), unchanged());
    assert_eq!(run(&["PEXPIREAT", "sess:1", "1"]), unchanged());
}

#[test]
fn persist() {
    assert_eq!(
        run(&["PERSIST", "sess:1"]),
        Err(
            "ERR strata: PERSIST is not allowed in layer 'sess': its keys must expire \
             within max_ttl 10m"
                .to_string()
        )
    );
    assert_eq!(run(&["PERSIST", "tmp:1"]), unchanged());
    assert_eq!(run(&["PERSIST", "other"]), unchanged());
    assert_eq!(run(&["PERSIST"]), unchanged());
}

#[test]
fn error_text_uses_humantime() {
    let limits = |_: &[u8]| TtlLimits {
        layer: "results",
        ttl_ms: None,
        max_ttl_ms: Some(90_061_000),
    };
    assert_eq!(
        apply("persist", &bytes(&["PERSIST", "k"]), &limits, NOW),
        Err(
            "ERR strata: PERSIST is not allowed in layer 'results': its keys must expire \
             within max_ttl 1day 1h 1m 1s"
                .to_string()
        )
    );
}

mod followers;
