//! The vocabulary of the command table: what strata knows about one Redis command.
//!
//! A [`CommandSpec`] says how many arguments the command takes, what kind of command it is (the
//! flags Redis reports in `COMMAND INFO`, plus strata's own), where its keys are, and how strata
//! routes it. The table itself lives in `table.rs`; `classify.rs` turns a request into a plan.

use bytes::Bytes;

/// Flags, as a bit set. The first group mirrors Redis's own command flags (reported by
/// `COMMAND INFO`); the last group is strata's.
pub mod flags {
    /// Writes data (Redis flag `write`).
    pub const WRITE: u32 = 1 << 0;
    /// Reads data without changing it (`readonly`).
    pub const READONLY: u32 = 1 << 1;
    /// May grow memory (`denyoom`).
    pub const DENYOOM: u32 = 1 << 2;
    /// Administrative command (`admin`).
    pub const ADMIN: u32 = 1 << 3;
    /// Pub/sub related (`pubsub`).
    pub const PUBSUB: u32 = 1 << 4;
    /// Not allowed in scripts (`noscript`).
    pub const NOSCRIPT: u32 = 1 << 5;
    /// May block the client (`blocking`).
    pub const BLOCKING: u32 = 1 << 6;
    /// Allowed while loading (`loading`).
    pub const LOADING: u32 = 1 << 7;
    /// Allowed on a stale replica (`stale`).
    pub const STALE: u32 = 1 << 8;
    /// O(1) or O(log N) (`fast`).
    pub const FAST: u32 = 1 << 9;
    /// Allowed before authentication (`no_auth`).
    pub const NO_AUTH: u32 = 1 << 10;
    /// May replicate (`may_replicate`).
    pub const MAY_REPLICATE: u32 = 1 << 11;
    /// Key positions depend on the arguments (`movablekeys`).
    pub const MOVABLEKEYS: u32 = 1 << 12;
    /// Not allowed inside MULTI (`no_multi`).
    pub const NO_MULTI: u32 = 1 << 13;

    /// strata: refused unless `security.allow_dangerous_commands` is true (FLUSH*, KEYS, CONFIG SET).
    pub const DANGEROUS: u32 = 1 << 24;

    /// Redis's names for the flags above, in the order `COMMAND INFO` lists them.
    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (MAY_REPLICATE, "may_replicate"),
        (NO_MULTI, "no_multi"),
        (MOVABLEKEYS, "movablekeys"),
    ];
}

/// Where a command's keys are, as argument indexes (0 is the command name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// No keys.
    None,
    /// Redis's legacy triple: keys at `first`, `first + step`, ... up to `last`; a negative `last`
    /// counts from the end (`-1` = the last argument, `-2` = the one before it).
    Range {
        first: usize,
        last: isize,
        step: usize,
    },
    /// `fixed` keys at the given positions, then a count at `numkeys_at` followed by that many
    /// keys (EVAL, FCALL, ZUNIONSTORE, ZINTER, SINTERCARD, LMPOP, ZMPOP, ...).
    NumKeys {
        fixed: &'static [usize],
        numkeys_at: usize,
    },
    /// Keys follow the `STREAMS` keyword: the first half of the remaining arguments (XREAD,
    /// XREADGROUP).
    Streams,
    /// Key at 1, plus the argument after a `STORE` (or `STOREDIST`) keyword (SORT, GEORADIUS...).
    KeyAndStore,
    /// Key at 2 when there are at least 3 arguments (container commands such as OBJECT ENCODING
    /// key, XINFO STREAM key, XGROUP CREATE key, MEMORY USAGE key).
    SubcommandKey,
}

impl KeySpec {
    /// One key, the first argument: most commands (GET, SET, HGET, ...). The planner's fast
    /// paths test for it rather than collect key positions.
    pub const FIRST_ONLY: KeySpec = KeySpec::Range {
        first: 1,
        last: 1,
        step: 1,
    };
}

/// How strata routes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Every key must hash to one node; the request goes there unchanged. Commands with exactly
    /// one key are the common case. Keys on different nodes: `-CROSSSLOT`.
    SameNode,
    /// A multi-key command split per node and merged back in argument order.
    Split(Split),
    /// Sent to every node; the replies merged.
    FanOut(Merge),
    /// Keyless, sent to one node (the first that is up): e.g. `COMMAND DOCS`, `LOLWUT`.
    AnyNode,
    /// Answered by strata itself (`local.rs`), sometimes with help from the nodes.
    Local,
    /// Container command (CONFIG, SCRIPT, FUNCTION, CLIENT, ...): the route depends on the
    /// subcommand, decided in `classify.rs`.
    Subcommand,
    /// May block (BLPOP, BZPOPMIN, WAIT, XREAD ... BLOCK, ...): runs on a connection of its own
    /// to the keys' node (`backend::dedicated`), never on a shared one.
    Blocking,
    /// Refused: `-ERR strata: '<cmd>' is not supported through the proxy`.
    Unsupported,
}

/// How a split multi-key command is cut and merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `MGET k1 k2 ...`: one key per part; reply is an array in argument order.
    Mget,
    /// `MSET k1 v1 k2 v2 ...`: key/value pairs; reply `+OK` when every part said OK.
    Mset,
    /// `DEL`/`UNLINK`/`EXISTS`/`TOUCH k1 k2 ...`: integer replies summed.
    SumKeys,
}

/// How the replies of a fanned-out command are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `+OK` when every node said OK, else the first error (FLUSHDB, FLUSHALL, CONFIG SET, ...).
    AllOk,
    /// Per-element AND of integer arrays (SCRIPT EXISTS).
    AllOfArrays,
    /// The first node's reply, once every node agreed to succeed (SCRIPT LOAD: the SHA).
    FirstReply,
    /// The keyspace reads, each key counted once whatever its copies
    /// (`coordinator::keyspace`): DBSIZE, KEYS, RANDOMKEY, SCAN (its cursor names the node).
    DbSize,
    Keys,
    RandomKey,
    Scan,
}

/// What strata knows about one command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name, as `COMMAND INFO` reports it.
    pub name: &'static str,
    /// Redis arity: `n` means exactly `n` arguments (the name included), `-n` at least `n`.
    pub arity: i32,
    /// Bit set of [`flags`].
    pub flags: u32,
    /// The legacy (first, last, step) triple reported by `COMMAND INFO`.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// Where the keys are, for routing.
    pub keys: KeySpec,
    /// How the command is routed.
    pub route: Route,
}

/// Why key positions could not be worked out from the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A numkeys argument that is not a number, negative, or larger than the arguments left.
    /// The text is Redis's own reply for the command.
    BadNumKeys(&'static str),
    /// XREAD/XREADGROUP without a well-formed `STREAMS` section.
    BadStreams,
}

impl CommandSpec {
    /// True when `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = self.arity as i64;
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// True when the spec has flag `f`.
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }
}

/// Parses a decimal count argument the way Redis does for numkeys (no sign, no spaces).
pub fn parse_count(arg: &Bytes) -> Option<usize> {
    if arg.is_empty() || arg.len() > 18 {
        return None;
    }
    let mut n: usize = 0;
    for &b in arg.iter() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

/// Commands with subcommands (CONFIG GET, XINFO STREAM ...): CLIENT LIST shows
/// `name|subcommand` for them, as Redis 7 does.
const CONTAINERS: &[&str] = &[
    "acl", "client", "cluster", "command", "config", "function", "latency", "memory", "module",
    "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
];

/// Whether the command-table name `name` has subcommands.
pub fn has_subcommands(name: &str) -> bool {
    CONTAINERS.contains(&name)
}
