//! Creating writes: which keys a write may create (SETNX, HSET, the *STORE family, SMOVE,
//! SORT ... STORE, XGROUP CREATE ... MKSTREAM, MSET, ...), and the `PEXPIRE key ttl NX`
//! followers that give them their layer's TTL.

use std::collections::HashSet;

use bytes::Bytes;

use super::{is, pexpire_nx, TtlLimits, TtlPlan};

/// Where the key(s) a creating write may create are in its arguments.
#[derive(Debug, Clone, Copy)]
pub(super) enum Created {
    /// At this index, when the request has at least `.1` arguments (Redis's arity, so that a
    /// request Redis refuses gets no follower).
    At(usize, usize),
    /// MSET/MSETNX: args[1], args[3], ...
    Pairs,
    /// The argument after the last STORE/STOREDIST option (the last one is the one Redis
    /// uses), options starting at `.0`; `.1` lists the options that take values, which are
    /// skipped so that a value spelled "store" is not read as the keyword.
    Store(usize, &'static [(&'static str, usize)]),
    /// XGROUP CREATE key group id ... MKSTREAM
    XGroupCreate,
}

const SORT_VALUES: &[(&str, usize)] = &[("by", 1), ("limit", 2), ("get", 1)];
const GEORADIUS_VALUES: &[(&str, usize)] = &[("count", 1)];

pub(super) fn creating_rule(name: &str) -> Option<Created> {
    Some(match name {
        "incr" | "decr" | "pfadd" | "bitfield" => Created::At(1, 2),
        "setnx" | "getset" | "append" | "incrby" | "incrbyfloat" | "decrby" | "lpush" | "rpush"
        | "sadd" => Created::At(1, 3),
        "setrange" | "setbit" | "hset" | "hsetnx" | "hmset" | "hincrby" | "hincrbyfloat"
        | "zadd" | "zincrby" => Created::At(1, 4),
        "xadd" | "geoadd" => Created::At(1, 5),
        "pfmerge" => Created::At(1, 2),
        "sunionstore" | "sinterstore" | "sdiffstore" => Created::At(1, 3),
        "zunionstore" | "zinterstore" | "zdiffstore" => Created::At(1, 4),
        "zrangestore" => Created::At(1, 5),
        "geosearchstore" => Created::At(1, 8),
        "rpoplpush" | "copy" | "rename" | "renamenx" => Created::At(2, 3),
        "smove" | "bitop" => Created::At(2, 4),
        "lmove" => Created::At(2, 5),
        "mset" | "msetnx" => Created::Pairs,
        "sort" => Created::Store(2, SORT_VALUES),
        // Options start after the fixed arguments, so that a member named "store" is not
        // taken for the keyword.
        "georadius" => Created::Store(6, GEORADIUS_VALUES),
        "georadiusbymember" => Created::Store(5, GEORADIUS_VALUES),
        "xgroup" => Created::XGroupCreate,
        _ => return None,
    })
}

/// The keys `rule` says the request may create (possibly repeated).
pub(super) fn created_keys(rule: Created, args: &[Bytes]) -> Vec<&Bytes> {
    match rule {
        Created::At(index, arity) if args.len() >= arity => args.get(index).into_iter().collect(),
        Created::At(..) => Vec::new(),
        // A missing value makes Redis refuse the whole request.
        Created::Pairs if args.len() >= 3 && args.len() % 2 == 1 => {
            args.iter().skip(1).step_by(2).collect()
        }
        Created::Pairs => Vec::new(),
        Created::Store(start, valued) => {
            let mut target = None;
            let mut at = start;
            while let Some(word) = args.get(at) {
                if is(word, "store") || is(word, "storedist") {
                    target = args.get(at + 1).or(target);
                    at += 2;
                } else {
                    let skip = valued
                        .iter()
                        .find(|(option, _)| is(word, option))
                        .map_or(0, |&(_, count)| count);
                    at += 1 + skip;
                }
            }
            target.into_iter().collect()
        }
        Created::XGroupCreate => {
            let is_create = args.get(1).is_some_and(|sub| is(sub, "create"));
            let mkstream = args.iter().skip(5).any(|arg| is(arg, "mkstream"));
            if is_create && mkstream && args.len() >= 5 {
                args.get(2).into_iter().collect()
            } else {
                Vec::new()
            }
        }
    }
}

/// One `PEXPIRE key D NX` per distinct key whose layer has a default TTL, in order of first
/// appearance.
pub(super) fn followers_plan<'a>(
    keys: &[&Bytes],
    limits: &dyn Fn(&[u8]) -> TtlLimits<'a>,
) -> TtlPlan {
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut followers = Vec::new();
    for key in keys {
        if keys.len() > 1 && !seen.insert(key.as_ref()) {
            continue;
        }
        if let Some(default) = limits(key).default_ms() {
            followers.push(pexpire_nx(key, default));
        }
    }
    TtlPlan {
        followers,
        ..TtlPlan::default()
    }
}
