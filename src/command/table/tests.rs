//! Unit tests of the command table: lookups, routes, flags and key specs agreeing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use std::collections::HashSet;

#[test]
fn names_are_lowercase_unique_and_sorted() {
    let mut seen = HashSet::new();
    for spec in COMMANDS {
        assert!(!spec.name.is_empty());
        assert_eq!(spec.name, spec.name.to_ascii_lowercase(), "{}", spec.name);
        assert!(seen.insert(spec.name), "duplicate {}", spec.name);
    }
    for pair in COMMANDS.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} / {}",
            pair[0].name,
            pair[1].name
        );
    }
}

#[test]
fn table_size() {
    // 240 Redis 7.0 commands plus STRATA.
    assert!(COMMANDS.len() >= 230);
    assert_eq!(COMMANDS.len(), 241);
    assert!(COMMANDS.iter().all(|c| c.name.len() <= MAX_NAME));
}

#[test]
fn lookup_ignores_case() {
    assert_eq!(lookup(b"GeT").unwrap().name, "get");
    assert_eq!(lookup(b"get").unwrap().name, "get");
    assert_eq!(
        lookup(b"GEORADIUSBYMEMBER_RO").unwrap().name,
        "georadiusbymember_ro"
    );
    assert_eq!(lookup(b"Restore-Asking").unwrap().name, "restore-asking");
    assert!(lookup(b"nosuchcommand").is_none());
    assert!(lookup(b"").is_none());
    assert!(lookup(&[b'a'; 33]).is_none());
    assert!(lookup(&[b'a'; 32]).is_none());
    for spec in COMMANDS {
        let upper = spec.name.to_ascii_uppercase();
        assert!(std::ptr::eq(lookup(upper.as_bytes()).unwrap(), spec));
    }
}

#[test]
fn spot_checks() {
    let get = lookup(b"get").unwrap();
    assert_eq!(get.arity, 2);
    assert_eq!(get.flags, READONLY | FAST);
    assert_eq!((get.first_key, get.last_key, get.step), (1, 1, 1));
    assert_eq!(
        get.keys,
        KeySpec::Range {
            first: 1,
            last: 1,
            step: 1
        }
    );
    assert_eq!(get.route, Route::SameNode);

    let mset = lookup(b"mset").unwrap();
    assert_eq!(mset.arity, -3);
    assert_eq!(
        mset.keys,
        KeySpec::Range {
            first: 1,
            last: -1,
            step: 2
        }
    );
    assert_eq!(mset.route, Route::Split(Split::Mset));
    assert_eq!(lookup(b"mget").unwrap().route, Route::Split(Split::Mget));
    for name in ["del", "unlink", "exists", "touch"] {
        let spec = lookup(name.as_bytes()).unwrap();
        assert_eq!(spec.route, Route::Split(Split::SumKeys), "{name}");
        assert_eq!(
            spec.keys,
            KeySpec::Range {
                first: 1,
                last: -1,
                step: 1
            }
        );
    }

    let bitop = lookup(b"bitop").unwrap();
    assert_eq!(
        bitop.keys,
        KeySpec::Range {
            first: 2,
            last: -1,
            step: 1
        }
    );
    assert_eq!(
        lookup(b"rename").unwrap().keys,
        KeySpec::Range {
            first: 1,
            last: 2,
            step: 1
        }
    );

    let eval = lookup(b"eval").unwrap();
    assert_eq!(eval.arity, -3);
    assert!(eval.has(MOVABLEKEYS));
    assert_eq!(
        eval.keys,
        KeySpec::NumKeys {
            fixed: &[],
            numkeys_at: 2
        }
    );
    assert_eq!(eval.route, Route::SameNode);
    let zus = lookup(b"zunionstore").unwrap();
    assert_eq!(
        zus.keys,
        KeySpec::NumKeys {
            fixed: &[1],
            numkeys_at: 2
        }
    );
    assert_eq!((zus.first_key, zus.last_key, zus.step), (1, 1, 1));
    assert_eq!(lookup(b"bzmpop").unwrap().keys, NUMKEYS_AT_2);
    assert_eq!(lookup(b"lmpop").unwrap().keys, NUMKEYS_AT_1);

    assert_eq!(lookup(b"xread").unwrap().keys, KeySpec::Streams);
    assert_eq!(lookup(b"xread").unwrap().route, Route::SameNode);
    assert_eq!(lookup(b"sort").unwrap().keys, KeySpec::KeyAndStore);
    assert_eq!(lookup(b"georadius").unwrap().keys, KeySpec::KeyAndStore);
    assert_eq!(lookup(b"object").unwrap().keys, KeySpec::SubcommandKey);
    assert_eq!(lookup(b"memory").unwrap().route, Route::SameNode);

    assert_eq!(
        lookup(b"dbsize").unwrap().route,
        Route::FanOut(Merge::DbSize)
    );
    assert_eq!(lookup(b"keys").unwrap().route, Route::FanOut(Merge::Keys));
    assert_eq!(lookup(b"scan").unwrap().route, Route::FanOut(Merge::Scan));
    assert_eq!(
        lookup(b"randomkey").unwrap().route,
        Route::FanOut(Merge::RandomKey)
    );
    assert_eq!(
        lookup(b"flushall").unwrap().route,
        Route::FanOut(Merge::AllOk)
    );
    assert_eq!(lookup(b"config").unwrap().route, Route::Subcommand);
    assert_eq!(lookup(b"command").unwrap().route, Route::Local);
    assert_eq!(lookup(b"lolwut").unwrap().route, Route::AnyNode);

    let strata = lookup(b"STRATA").unwrap();
    assert_eq!(strata.arity, -2);
    assert_eq!(strata.flags, ADMIN | NOSCRIPT | LOADING | STALE);
    assert_eq!(strata.keys, KeySpec::None);
    assert_eq!(strata.route, Route::Local);
}

#[test]
fn dangerous_commands() {
    let dangerous: Vec<&str> = COMMANDS
        .iter()
        .filter(|c| c.has(DANGEROUS))
        .map(|c| c.name)
        .collect();
    assert_eq!(dangerous, ["flushall", "flushdb", "keys"]);
}

#[test]
fn unsupported_and_local() {
    for name in [
        "monitor",
        "shutdown",
        "replicaof",
        "slaveof",
        "debug",
        "sync",
        "psync",
        "save",
        "bgsave",
        "cluster",
        "multi",
        "exec",
        "watch",
        "subscribe",
        "swapdb",
        "move",
        "migrate",
        "reset",
        "module",
    ] {
        assert_eq!(
            lookup(name.as_bytes()).unwrap().route,
            Route::Unsupported,
            "{name}"
        );
    }
    // ACL answers some subcommands itself (WHOAMI, LIST, USERS) and refuses the others.
    assert_eq!(lookup(b"acl").unwrap().route, Route::Subcommand);
    for name in [
        "ping", "echo", "quit", "select", "hello", "info", "time", "command", "auth",
    ] {
        assert_eq!(
            lookup(name.as_bytes()).unwrap().route,
            Route::Local,
            "{name}"
        );
    }
    // Every blocking command runs on a dedicated connection, except XREAD/XREADGROUP,
    // which block only with the BLOCK option (classify routes that form there).
    for spec in COMMANDS.iter().filter(|c| c.has(BLOCKING)) {
        if spec.name.starts_with("xread") {
            assert_eq!(spec.route, Route::SameNode, "{}", spec.name);
        } else {
            assert_eq!(spec.route, Route::Blocking, "{}", spec.name);
        }
    }
    assert_eq!(lookup(b"wait").unwrap().route, Route::Blocking);
}

#[test]
fn key_specs_agree_with_flags_and_triples() {
    for spec in COMMANDS {
        match spec.keys {
            KeySpec::NumKeys { .. } | KeySpec::Streams | KeySpec::KeyAndStore => {
                assert!(spec.has(MOVABLEKEYS), "{}", spec.name);
            }
            // PUBLISH's channel is placed like a key, though Redis reports no key.
            KeySpec::Range { .. } if spec.name == "publish" => {
                assert_eq!(spec.first_key, 0);
            }
            KeySpec::Range { first, last, step } => {
                assert!(first >= 1 && step >= 1, "{}", spec.name);
                assert_eq!(
                    (spec.first_key, spec.last_key, spec.step),
                    (first as i32, last as i32, step as i32),
                    "{}",
                    spec.name
                );
            }
            KeySpec::None => {
                assert_eq!(spec.first_key, 0, "{}", spec.name);
                assert!(!spec.has(MOVABLEKEYS), "{}", spec.name);
            }
            KeySpec::SubcommandKey => {}
        }
        // Split and same-node routes need keys.
        if matches!(spec.route, Route::SameNode | Route::Split(_)) {
            assert_ne!(spec.keys, KeySpec::None, "{}", spec.name);
        }
        // Arity counts the name.
        assert!(spec.arity != 0, "{}", spec.name);
    }
}
