//! The static command table: every Redis 7.0 command strata knows, with its arity, flags, key
//! positions and route, plus strata's own `STRATA` command.
//!
//! Arity, flags and the legacy `(first, last, step)` key triple are the values `COMMAND INFO`
//! reports on redis-server 7.0 (flags outside [`flags`](crate::command::spec::flags) are left
//! out). [`KeySpec`] says how strata finds every key of a request (see `keys.rs`), and [`Route`]
//! how the request is sent.

use std::sync::OnceLock;

use ahash::AHashMap;

use crate::command::spec::flags::{
    ADMIN, BLOCKING, DANGEROUS, DENYOOM, FAST, LOADING, MOVABLEKEYS, NOSCRIPT, NO_AUTH, NO_MULTI,
    PUBSUB, READONLY, STALE, WRITE,
};
use crate::command::spec::{CommandSpec, KeySpec, Merge, Route, Split};

/// The longest command name [`lookup`] accepts (the longest real one is 20 bytes).
const MAX_NAME: usize = 32;

/// EVAL, FCALL and friends: a count at 2, then that many keys.
const NUMKEYS_AT_2: KeySpec = KeySpec::NumKeys {
    fixed: &[],
    numkeys_at: 2,
};
/// ZUNION, ZINTER, SINTERCARD, LMPOP, ...: a count at 1, then that many keys.
const NUMKEYS_AT_1: KeySpec = KeySpec::NumKeys {
    fixed: &[],
    numkeys_at: 1,
};
/// ZUNIONSTORE and friends: the destination at 1, a count at 2, then that many keys.
const DEST_NUMKEYS_AT_2: KeySpec = KeySpec::NumKeys {
    fixed: &[1],
    numkeys_at: 2,
};

/// A command with one key, at 1, routed to the node owning it.
const fn single(name: &'static str, arity: i32, flags: u32) -> CommandSpec {
    multi(name, arity, flags, 1, 1, 1)
}

/// A command whose keys are the legacy triple, all on one node.
const fn multi(
    name: &'static str,
    arity: i32,
    flags: u32,
    first: i32,
    last: i32,
    step: i32,
) -> CommandSpec {
    range(name, arity, flags, first, last, step, Route::SameNode)
}

/// A command whose keys are the legacy triple, with an explicit route.
const fn range(
    name: &'static str,
    arity: i32,
    flags: u32,
    first: i32,
    last: i32,
    step: i32,
    route: Route,
) -> CommandSpec {
    let keys = KeySpec::Range {
        first: first as usize,
        last: last as isize,
        step: step as usize,
    };
    spec(name, arity, flags, (first, last, step), keys, route)
}

/// A command without keys.
const fn keyless(name: &'static str, arity: i32, flags: u32, route: Route) -> CommandSpec {
    spec(name, arity, flags, (0, 0, 0), KeySpec::None, route)
}

/// The general form: the legacy triple as Redis reports it, and strata's own key spec.
const fn spec(
    name: &'static str,
    arity: i32,
    flags: u32,
    triple: (i32, i32, i32),
    keys: KeySpec,
    route: Route,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: triple.0,
        last_key: triple.1,
        step: triple.2,
        keys,
        route,
    }
}

/// Every command, sorted by name (one line each, hence no rustfmt).
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    keyless("acl", -2, 0, Route::Subcommand),
    single("append", 3, WRITE | DENYOOM | FAST),
    keyless("asking", 1, FAST, Route::Unsupported),
    keyless("auth", -2, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH, Route::Local),
    keyless("bgrewriteaof", 1, ADMIN | NOSCRIPT, Route::Unsupported),
    keyless("bgsave", -1, ADMIN | NOSCRIPT, Route::Unsupported),
    single("bitcount", -2, READONLY),
    single("bitfield", -2, WRITE | DENYOOM),
    single("bitfield_ro", -2, READONLY | FAST),
    multi("bitop", -4, WRITE | DENYOOM, 2, -1, 1),
    single("bitpos", -3, READONLY),
    range("blmove", 6, WRITE | DENYOOM | NOSCRIPT | BLOCKING, 1, 2, 1, Route::Blocking),
    spec("blmpop", -5, WRITE | BLOCKING | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::Blocking),
    range("blpop", -3, WRITE | NOSCRIPT | BLOCKING, 1, -2, 1, Route::Blocking),
    range("brpop", -3, WRITE | NOSCRIPT | BLOCKING, 1, -2, 1, Route::Blocking),
    range("brpoplpush", 4, WRITE | DENYOOM | NOSCRIPT | BLOCKING, 1, 2, 1, Route::Blocking),
    spec("bzmpop", -5, WRITE | BLOCKING | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::Blocking),
    range("bzpopmax", -3, WRITE | NOSCRIPT | BLOCKING | FAST, 1, -2, 1, Route::Blocking),
    range("bzpopmin", -3, WRITE | NOSCRIPT | BLOCKING | FAST, 1, -2, 1, Route::Blocking),
    keyless("client", -2, 0, Route::Subcommand),
    keyless("cluster", -2, 0, Route::Unsupported),
    keyless("command", -1, LOADING | STALE, Route::Local),
    keyless("config", -2, 0, Route::Subcommand),
    multi("copy", -3, WRITE | DENYOOM, 1, 2, 1),
    keyless("dbsize", 1, READONLY | FAST, Route::FanOut(Merge::DbSize)),
    keyless("debug", -2, ADMIN | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    single("decr", 2, WRITE | DENYOOM | FAST),
    single("decrby", 3, WRITE | DENYOOM | FAST),
    range("del", -2, WRITE, 1, -1, 1, Route::Split(Split::SumKeys)),
    keyless("discard", 1, NOSCRIPT | LOADING | STALE | FAST, Route::Unsupported),
    single("dump", 2, READONLY),
    keyless("echo", 2, LOADING | STALE | FAST, Route::Local),
    spec("eval", -3, NOSCRIPT | STALE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::SameNode),
    spec("eval_ro", -3, READONLY | NOSCRIPT | STALE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::SameNode),
    spec("evalsha", -3, NOSCRIPT | STALE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::SameNode),
    spec("evalsha_ro", -3, READONLY | NOSCRIPT | STALE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::SameNode),
    keyless("exec", 1, NOSCRIPT | LOADING | STALE, Route::Unsupported),
    range("exists", -2, READONLY | FAST, 1, -1, 1, Route::Split(Split::SumKeys)),
    single("expire", -3, WRITE | FAST),
    single("expireat", -3, WRITE | FAST),
    single("expiretime", 2, READONLY | FAST),
    keyless("failover", -1, ADMIN | NOSCRIPT | STALE, Route::Unsupported),
    spec("fcall", -3, NOSCRIPT | STALE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::SameNode),
    spec("fcall_ro", -3, READONLY | NOSCRIPT | STALE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_2, Route::SameNode),
    keyless("flushall", -1, WRITE | DANGEROUS, Route::FanOut(Merge::AllOk)),
    keyless("flushdb", -1, WRITE | DANGEROUS, Route::FanOut(Merge::AllOk)),
    keyless("function", -2, 0, Route::Subcommand),
    single("geoadd", -5, WRITE | DENYOOM),
    single("geodist", -4, READONLY),
    single("geohash", -2, READONLY),
    single("geopos", -2, READONLY),
    spec("georadius", -6, WRITE | DENYOOM | MOVABLEKEYS, (1, 1, 1), KeySpec::KeyAndStore, Route::SameNode),
    single("georadius_ro", -6, READONLY),
    spec("georadiusbymember", -5, WRITE | DENYOOM | MOVABLEKEYS, (1, 1, 1), KeySpec::KeyAndStore, Route::SameNode),
    single("georadiusbymember_ro", -5, READONLY),
    single("geosearch", -7, READONLY),
    multi("geosearchstore", -8, WRITE | DENYOOM, 1, 2, 1),
    single("get", 2, READONLY | FAST),
    single("getbit", 3, READONLY | FAST),
    single("getdel", 2, WRITE | FAST),
    single("getex", -2, WRITE | FAST),
    single("getrange", 4, READONLY),
    single("getset", 3, WRITE | DENYOOM | FAST),
    single("hdel", -3, WRITE | FAST),
    keyless("hello", -1, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH, Route::Local),
    single("hexists", 3, READONLY | FAST),
    single("hget", 3, READONLY | FAST),
    single("hgetall", 2, READONLY),
    single("hincrby", 4, WRITE | DENYOOM | FAST),
    single("hincrbyfloat", 4, WRITE | DENYOOM | FAST),
    single("hkeys", 2, READONLY),
    single("hlen", 2, READONLY | FAST),
    single("hmget", -3, READONLY | FAST),
    single("hmset", -4, WRITE | DENYOOM | FAST),
    single("hrandfield", -2, READONLY),
    single("hscan", -3, READONLY),
    single("hset", -4, WRITE | DENYOOM | FAST),
    single("hsetnx", 4, WRITE | DENYOOM | FAST),
    single("hstrlen", 3, READONLY | FAST),
    single("hvals", 2, READONLY),
    single("incr", 2, WRITE | DENYOOM | FAST),
    single("incrby", 3, WRITE | DENYOOM | FAST),
    single("incrbyfloat", 3, WRITE | DENYOOM | FAST),
    keyless("info", -1, LOADING | STALE, Route::Local),
    keyless("keys", 2, READONLY | DANGEROUS, Route::FanOut(Merge::Keys)),
    keyless("lastsave", 1, LOADING | STALE | FAST, Route::Unsupported),
    keyless("latency", -2, 0, Route::Unsupported),
    multi("lcs", -3, READONLY, 1, 2, 1),
    single("lindex", 3, READONLY),
    single("linsert", 5, WRITE | DENYOOM),
    single("llen", 2, READONLY | FAST),
    multi("lmove", 5, WRITE | DENYOOM, 1, 2, 1),
    spec("lmpop", -4, WRITE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    keyless("lolwut", -1, READONLY | FAST, Route::AnyNode),
    single("lpop", -2, WRITE | FAST),
    single("lpos", -3, READONLY),
    single("lpush", -3, WRITE | DENYOOM | FAST),
    single("lpushx", -3, WRITE | DENYOOM | FAST),
    single("lrange", 4, READONLY),
    single("lrem", 4, WRITE),
    single("lset", 4, WRITE | DENYOOM),
    single("ltrim", 4, WRITE),
    spec("memory", -2, 0, (0, 0, 0), KeySpec::SubcommandKey, Route::SameNode),
    range("mget", -2, READONLY | FAST, 1, -1, 1, Route::Split(Split::Mget)),
    range("migrate", -6, WRITE | MOVABLEKEYS, 3, 3, 1, Route::Unsupported),
    keyless("module", -2, 0, Route::Unsupported),
    keyless("monitor", 1, ADMIN | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    range("move", 3, WRITE | FAST, 1, 1, 1, Route::Unsupported),
    range("mset", -3, WRITE | DENYOOM, 1, -1, 2, Route::Split(Split::Mset)),
    multi("msetnx", -3, WRITE | DENYOOM, 1, -1, 2),
    keyless("multi", 1, NOSCRIPT | LOADING | STALE | FAST, Route::Unsupported),
    spec("object", -2, 0, (0, 0, 0), KeySpec::SubcommandKey, Route::SameNode),
    single("persist", 2, WRITE | FAST),
    single("pexpire", -3, WRITE | FAST),
    single("pexpireat", -3, WRITE | FAST),
    single("pexpiretime", 2, READONLY | FAST),
    single("pfadd", -2, WRITE | DENYOOM | FAST),
    multi("pfcount", -2, READONLY, 1, -1, 1),
    range("pfdebug", 3, WRITE | DENYOOM | ADMIN, 2, 2, 1, Route::Unsupported),
    multi("pfmerge", -2, WRITE | DENYOOM, 1, -1, 1),
    keyless("pfselftest", 1, ADMIN, Route::AnyNode),
    keyless("ping", -1, FAST, Route::Local),
    single("psetex", 4, WRITE | DENYOOM),
    keyless("psubscribe", -2, PUBSUB | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    keyless("psync", -3, ADMIN | NOSCRIPT | NO_MULTI, Route::Unsupported),
    single("pttl", 2, READONLY | FAST),
    // The channel is placed on the ring like a key (COMMAND reports no key, as Redis does).
    spec("publish", 3, PUBSUB | LOADING | STALE | FAST, (0, 0, 0), KeySpec::Range { first: 1, last: 1, step: 1 }, Route::SameNode),
    keyless("pubsub", -2, 0, Route::Local),
    keyless("punsubscribe", -1, PUBSUB | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    keyless("quit", -1, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH, Route::Local),
    keyless("randomkey", 1, READONLY, Route::FanOut(Merge::RandomKey)),
    keyless("readonly", 1, LOADING | STALE | FAST, Route::Unsupported),
    keyless("readwrite", 1, LOADING | STALE | FAST, Route::Unsupported),
    multi("rename", 3, WRITE, 1, 2, 1),
    multi("renamenx", 3, WRITE | FAST, 1, 2, 1),
    keyless("replconf", -1, ADMIN | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    keyless("replicaof", 3, ADMIN | NOSCRIPT | STALE, Route::Unsupported),
    keyless("reset", 1, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH, Route::Unsupported),
    single("restore", -4, WRITE | DENYOOM),
    range("restore-asking", -4, WRITE | DENYOOM, 1, 1, 1, Route::Unsupported),
    keyless("role", 1, NOSCRIPT | LOADING | STALE | FAST, Route::Unsupported),
    single("rpop", -2, WRITE | FAST),
    multi("rpoplpush", 3, WRITE | DENYOOM, 1, 2, 1),
    single("rpush", -3, WRITE | DENYOOM | FAST),
    single("rpushx", -3, WRITE | DENYOOM | FAST),
    single("sadd", -3, WRITE | DENYOOM | FAST),
    keyless("save", 1, ADMIN | NOSCRIPT | NO_MULTI, Route::Unsupported),
    keyless("scan", -2, READONLY, Route::FanOut(Merge::Scan)),
    single("scard", 2, READONLY | FAST),
    keyless("script", -2, 0, Route::Subcommand),
    multi("sdiff", -2, READONLY, 1, -1, 1),
    multi("sdiffstore", -3, WRITE | DENYOOM, 1, -1, 1),
    keyless("select", 2, LOADING | STALE | FAST, Route::Local),
    single("set", -3, WRITE | DENYOOM),
    single("setbit", 4, WRITE | DENYOOM),
    single("setex", 4, WRITE | DENYOOM),
    single("setnx", 3, WRITE | DENYOOM | FAST),
    single("setrange", 4, WRITE | DENYOOM),
    keyless("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI, Route::Unsupported),
    multi("sinter", -2, READONLY, 1, -1, 1),
    spec("sintercard", -3, READONLY | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    multi("sinterstore", -3, WRITE | DENYOOM, 1, -1, 1),
    single("sismember", 3, READONLY | FAST),
    keyless("slaveof", 3, ADMIN | NOSCRIPT | STALE, Route::Unsupported),
    keyless("slowlog", -2, 0, Route::Unsupported),
    single("smembers", 2, READONLY),
    single("smismember", -3, READONLY | FAST),
    multi("smove", 4, WRITE | FAST, 1, 2, 1),
    spec("sort", -2, WRITE | DENYOOM | MOVABLEKEYS, (1, 1, 1), KeySpec::KeyAndStore, Route::SameNode),
    spec("sort_ro", -2, READONLY | MOVABLEKEYS, (1, 1, 1), KeySpec::Range { first: 1, last: 1, step: 1 }, Route::SameNode),
    single("spop", -2, WRITE | FAST),
    range("spublish", 3, PUBSUB | LOADING | STALE | FAST, 1, 1, 1, Route::SameNode),
    single("srandmember", -2, READONLY),
    single("srem", -3, WRITE | FAST),
    single("sscan", -3, READONLY),
    range("ssubscribe", -2, PUBSUB | NOSCRIPT | LOADING | STALE, 1, -1, 1, Route::Unsupported),
    keyless("strata", -2, ADMIN | NOSCRIPT | LOADING | STALE, Route::Local),
    single("strlen", 2, READONLY | FAST),
    keyless("subscribe", -2, PUBSUB | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    single("substr", 4, READONLY),
    multi("sunion", -2, READONLY, 1, -1, 1),
    multi("sunionstore", -3, WRITE | DENYOOM, 1, -1, 1),
    range("sunsubscribe", -1, PUBSUB | NOSCRIPT | LOADING | STALE, 1, -1, 1, Route::Unsupported),
    keyless("swapdb", 3, WRITE | FAST, Route::Unsupported),
    keyless("sync", 1, ADMIN | NOSCRIPT | NO_MULTI, Route::Unsupported),
    keyless("time", 1, LOADING | STALE | FAST, Route::Local),
    range("touch", -2, READONLY | FAST, 1, -1, 1, Route::Split(Split::SumKeys)),
    single("ttl", 2, READONLY | FAST),
    single("type", 2, READONLY | FAST),
    range("unlink", -2, WRITE | FAST, 1, -1, 1, Route::Split(Split::SumKeys)),
    keyless("unsubscribe", -1, PUBSUB | NOSCRIPT | LOADING | STALE, Route::Unsupported),
    keyless("unwatch", 1, NOSCRIPT | LOADING | STALE | FAST, Route::Unsupported),
    keyless("wait", 3, NOSCRIPT, Route::Blocking),
    range("watch", -2, NOSCRIPT | LOADING | STALE | FAST, 1, -1, 1, Route::Unsupported),
    single("xack", -4, WRITE | FAST),
    single("xadd", -5, WRITE | DENYOOM | FAST),
    single("xautoclaim", -6, WRITE | FAST),
    single("xclaim", -6, WRITE | FAST),
    single("xdel", -3, WRITE | FAST),
    spec("xgroup", -2, 0, (0, 0, 0), KeySpec::SubcommandKey, Route::SameNode),
    spec("xinfo", -2, 0, (0, 0, 0), KeySpec::SubcommandKey, Route::SameNode),
    single("xlen", 2, READONLY | FAST),
    single("xpending", -3, READONLY),
    single("xrange", -4, READONLY),
    spec("xread", -4, READONLY | BLOCKING | MOVABLEKEYS, (0, 0, 0), KeySpec::Streams, Route::SameNode),
    spec("xreadgroup", -7, WRITE | BLOCKING | MOVABLEKEYS, (0, 0, 0), KeySpec::Streams, Route::SameNode),
    single("xrevrange", -4, READONLY),
    single("xsetid", -3, WRITE | DENYOOM | FAST),
    single("xtrim", -4, WRITE),
    single("zadd", -4, WRITE | DENYOOM | FAST),
    single("zcard", 2, READONLY | FAST),
    single("zcount", 4, READONLY | FAST),
    spec("zdiff", -3, READONLY | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    spec("zdiffstore", -4, WRITE | DENYOOM | MOVABLEKEYS, (1, 1, 1), DEST_NUMKEYS_AT_2, Route::SameNode),
    single("zincrby", 4, WRITE | DENYOOM | FAST),
    spec("zinter", -3, READONLY | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    spec("zintercard", -3, READONLY | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    spec("zinterstore", -4, WRITE | DENYOOM | MOVABLEKEYS, (1, 1, 1), DEST_NUMKEYS_AT_2, Route::SameNode),
    single("zlexcount", 4, READONLY | FAST),
    spec("zmpop", -4, WRITE | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    single("zmscore", -3, READONLY | FAST),
    single("zpopmax", -2, WRITE | FAST),
    single("zpopmin", -2, WRITE | FAST),
    single("zrandmember", -2, READONLY),
    single("zrange", -4, READONLY),
    single("zrangebylex", -4, READONLY),
    single("zrangebyscore", -4, READONLY),
    multi("zrangestore", -5, WRITE | DENYOOM, 1, 2, 1),
    single("zrank", 3, READONLY | FAST),
    single("zrem", -3, WRITE | FAST),
    single("zremrangebylex", 4, WRITE),
    single("zremrangebyrank", 4, WRITE),
    single("zremrangebyscore", 4, WRITE),
    single("zrevrange", -4, READONLY),
    single("zrevrangebylex", -4, READONLY),
    single("zrevrangebyscore", -4, READONLY),
    single("zrevrank", 3, READONLY | FAST),
    single("zscan", -3, READONLY),
    single("zscore", 3, READONLY | FAST),
    spec("zunion", -3, READONLY | MOVABLEKEYS, (0, 0, 0), NUMKEYS_AT_1, Route::SameNode),
    spec("zunionstore", -4, WRITE | DENYOOM | MOVABLEKEYS, (1, 1, 1), DEST_NUMKEYS_AT_2, Route::SameNode),
];

/// The table indexed by (lower-case) name, built on first use.
fn index() -> &'static AHashMap<&'static [u8], &'static CommandSpec> {
    static INDEX: OnceLock<AHashMap<&'static [u8], &'static CommandSpec>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map = AHashMap::with_capacity(COMMANDS.len());
        for spec in COMMANDS {
            map.insert(spec.name.as_bytes(), spec);
        }
        map
    })
}

/// GET and SET, looked up once.
fn get_and_set() -> &'static (Option<&'static CommandSpec>, Option<&'static CommandSpec>) {
    static COMMON: OnceLock<(Option<&'static CommandSpec>, Option<&'static CommandSpec>)> =
        OnceLock::new();
    COMMON.get_or_init(|| {
        (
            index().get(&b"get"[..]).copied(),
            index().get(&b"set"[..]).copied(),
        )
    })
}

/// Finds a command by name, ignoring ASCII case. Does not allocate.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    // The commonest commands without hashing the name: about 20 instructions instead of 130
    // (callgrind, GET through the near cache).
    if let [a, b, c] = name {
        let (get, set) = get_and_set();
        match [
            a.to_ascii_lowercase(),
            b.to_ascii_lowercase(),
            c.to_ascii_lowercase(),
        ] {
            [b'g', b'e', b't'] => return *get,
            [b's', b'e', b't'] => return *set,
            _ => {}
        }
    }
    let mut buf = [0u8; MAX_NAME];
    let lower = buf.get_mut(..name.len())?;
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    index().get(&*lower).copied()
}

/// The name of the command at `index` in the table (CLIENT LIST's `cmd=`).
pub fn command_name(index: usize) -> &'static str {
    COMMANDS.get(index).map_or("NULL", |c| c.name)
}

/// The table index of a spec that came from the table.
pub fn command_index(spec: &'static CommandSpec) -> Option<usize> {
    let base = COMMANDS.as_ptr() as usize;
    let at = spec as *const CommandSpec as usize;
    let size = std::mem::size_of::<CommandSpec>().max(1);
    let index = at.checked_sub(base)? / size;
    (index < COMMANDS.len()).then_some(index)
}

#[cfg(test)]
mod tests;
