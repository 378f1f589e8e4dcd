//! The request sequence of the differential test, family by family (the data types' families
//! are in `types.rs`; here: connection, keyspace, generic, blocking, scripting, transactions,
//! pub/sub and server commands). Each request is sent to the direct redis-server and to strata
//! in the same state, so every step must be deterministic: explicit stream IDs, fixed absolute
//! expiry times, random-pick commands only where the data leaves one answer (a one-member set, a
//! count covering the whole collection), sets of strings (hash tables, whose order depends on
//! each process's random hash seed) only where the allow-list compares them unordered.
//!
//! Keys share the hash tag `{d}` (one node) unless a step is about keys on several nodes, which
//! use [`Given::spread`].

use crate::types;

/// One request of the sequence.
pub struct Step {
    pub args: Vec<Vec<u8>>,
    /// Replies the request gets (`SUBSCRIBE a b`: one per channel).
    pub replies: usize,
}

impl Step {
    /// The request as one line (arguments separated by spaces, binary ones escaped): how the
    /// report shows it and how the allow-list names it.
    pub fn text(&self) -> String {
        self.args
            .iter()
            .map(|a| crate::common::resp3::escape(a, 80))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command name, lower-cased.
    pub fn command(&self) -> String {
        self.args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// What the sequence needs from outside: payloads only a server can make, and keys on
/// different nodes.
pub struct Given {
    /// `DUMP` of the string `hello`.
    pub dump_hello: Vec<u8>,
    /// `FUNCTION DUMP` of [`LIBRARY`].
    pub function_dump: Vec<u8>,
    /// Keys without a hash tag that live on three different nodes of strata.
    pub spread: [&'static str; 3],
}

/// The Lua library of the FUNCTION and FCALL steps: one function only, because FUNCTION LIST
/// lists a library's functions in hash-table order.
pub const LIBRARY: &str = "#!lua name=difflib\nredis.register_function{function_name='dro', callback=function(keys, args) return redis.call('HGETALL', keys[1]) end, flags={'no-writes'}}";

/// A script loaded with SCRIPT LOAD, and its SHA1 (the EVALSHA steps name it).
const GET_SCRIPT: &str = "return redis.call('GET', KEYS[1])";
const GET_SCRIPT_SHA: &str = "d3c21d0c2b9ca22f82737626a27bcaf5d288f99f";

/// Builds the sequence.
pub struct Seq(Vec<Step>);

impl Seq {
    /// A request written as words separated by single spaces.
    pub fn cmd(&mut self, line: &str) {
        self.replies(line, 1);
    }

    /// A request that gets `n` replies.
    pub fn replies(&mut self, line: &str, n: usize) {
        let args = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        self.0.push(Step { args, replies: n });
    }

    /// A request whose arguments may hold spaces or binary data.
    pub fn args(&mut self, args: &[&[u8]]) {
        let args = args.iter().map(|a| a.to_vec()).collect();
        self.0.push(Step { args, replies: 1 });
    }
}

/// The whole sequence for one run over fresh RESP2 connections: `HELLO <proto>` first (the
/// run's protocol, 2 or 3), RESET and QUIT last (QUIT closes the connections).
pub fn sequence(proto: u8, given: &Given) -> Vec<Step> {
    let mut s = Seq(Vec::new());
    s.cmd(&format!("HELLO {proto}"));
    keyspace_alone(&mut s);
    connection(&mut s, proto);
    types::strings(&mut s);
    spread(&mut s, given);
    types::hashes(&mut s);
    types::lists(&mut s);
    types::sets(&mut s);
    types::sorted_sets(&mut s);
    blocking(&mut s);
    types::bitmaps(&mut s);
    types::hyperloglog(&mut s);
    types::geo(&mut s);
    types::streams(&mut s);
    generic(&mut s, given);
    scripting(&mut s, given);
    transactions(&mut s);
    pubsub(&mut s);
    server(&mut s);
    keyspace_wide(&mut s);
    last(&mut s);
    s.0
}

/// RANDOMKEY and DBSIZE while the keyspace holds nothing, then one key (one possible answer).
fn keyspace_alone(s: &mut Seq) {
    s.cmd("RANDOMKEY");
    s.cmd("DBSIZE");
    s.cmd("SET {d}only 1");
    s.cmd("RANDOMKEY");
    s.cmd("DBSIZE");
    s.cmd("DEL {d}only");
}

fn connection(s: &mut Seq, proto: u8) {
    s.cmd("PING");
    s.cmd("PING hello");
    s.cmd("PING a b");
    s.cmd("ECHO hello");
    s.cmd("ECHO");
    s.cmd("SELECT 0");
    s.cmd("SELECT 99999");
    s.cmd("SELECT x");
    s.cmd("AUTH secret");
    s.cmd("AUTH default secret");
    s.cmd("ACL WHOAMI");
    s.cmd("HELLO");
    s.cmd("HELLO 4");
    s.cmd("HELLO x");
    s.cmd(&format!("HELLO {proto} SETNAME diffclient"));
    s.cmd(&format!("HELLO {proto} BOGUS"));
    s.cmd("CLIENT GETNAME");
    s.cmd("CLIENT SETNAME second");
    s.cmd("CLIENT GETNAME");
    s.args(&[b"CLIENT", b"SETNAME", b"a b"]);
    s.cmd("CLIENT NO-EVICT on");
    s.cmd("CLIENT NO-EVICT off");
    s.cmd("CLIENT NO-EVICT maybe");
    // Redis 7.2's subcommands, unknown to 7.0.
    s.cmd("CLIENT SETINFO lib-name x");
    s.cmd("CLIENT NO-TOUCH on");
    s.cmd("CLIENT BOGUS");
    s.cmd("FOOBAR a b");
}

/// Keys on different nodes, without a hash tag: strata splits and merges these commands.
fn spread(s: &mut Seq, given: &Given) {
    let [a, b, c] = given.spread;
    s.cmd(&format!("MSET {a} 1 {b} 2 {c} 3"));
    s.cmd(&format!("MGET {a} nope1 {b} nope2 {c}"));
    s.cmd("MGET nope1 nope2");
    s.cmd(&format!("EXISTS {a} {b} {c} nope1 {a}"));
    s.cmd(&format!("TOUCH {a} {b} nope1"));
    s.cmd(&format!("DEL {a} nope1 {b}"));
    s.cmd(&format!("UNLINK {c} nope2"));
    s.cmd(&format!("MGET {a} {b} {c}"));
    s.cmd(&format!("EXISTS {a} {b} {c}"));
    s.cmd(&format!("MSET {a} 1 {b} 2 {c} 3"));
    // A read over two nodes: Redis runs it, strata cannot (see the allow-list).
    s.cmd(&format!("SUNION {a} {b}"));
}

/// Blocking commands on keys that hold data (they answer at once), and with a short timeout on
/// keys that hold none (nil once it passes).
fn blocking(s: &mut Seq) {
    s.cmd("RPUSH {d}q q1 q2 q3 q4 q5 q6");
    s.cmd("BLPOP {d}q 1");
    s.cmd("BLPOP {d}missing {d}q 1");
    s.cmd("BRPOP {d}q 1");
    s.cmd("BLMOVE {d}q {d}q2 RIGHT LEFT 1");
    s.cmd("BRPOPLPUSH {d}q2 {d}q 1");
    s.cmd("BLMPOP 1 2 {d}missing {d}q LEFT COUNT 2");
    s.cmd("BLPOP {d}missing 0.01");
    s.cmd("BLMPOP 0.01 1 {d}missing LEFT");
    s.cmd("BLPOP {d}q x");
    s.cmd("BZPOPMIN {d}zp 1");
    s.cmd("BZPOPMAX {d}missing {d}zp 1");
    s.cmd("BZMPOP 1 1 {d}zp MIN COUNT 5");
    s.cmd("BZPOPMIN {d}missing 0.01");
    s.cmd("BZMPOP 0.01 1 {d}zp MIN");
    s.cmd("WAIT 0 0");
}

fn generic(s: &mut Seq, given: &Given) {
    for key in [
        "{d}s",
        "{d}h",
        "{d}l",
        "{d}set",
        "{d}z",
        "{d}x",
        "{d}missing",
    ] {
        s.cmd(&format!("TYPE {key}"));
    }
    for key in ["{d}s", "{d}i", "{d}h", "{d}l", "{d}set", "{d}z2", "{d}x"] {
        s.cmd(&format!("OBJECT ENCODING {key}"));
    }
    s.cmd("SADD {d}ints2 1 2 3");
    s.cmd("OBJECT ENCODING {d}ints2");
    s.cmd("SMEMBERS {d}ints2");
    s.cmd("SUNION {d}ints2 {d}missing");
    s.cmd("OBJECT ENCODING {d}missing");
    s.cmd("OBJECT REFCOUNT {d}s");
    s.cmd("OBJECT FREQ {d}s");
    s.cmd("OBJECT HELP");
    s.cmd("OBJECT NOPE {d}s");
    s.cmd("MEMORY USAGE {d}s");
    s.cmd("MEMORY USAGE {d}h SAMPLES 0");
    s.cmd("MEMORY USAGE {d}missing");
    s.cmd("MEMORY HELP");
    for key in ["{d}s", "{d}h", "{d}z2", "{d}l2", "{d}missing"] {
        s.cmd(&format!("DUMP {key}"));
    }
    let payload = given.dump_hello.as_slice();
    s.args(&[b"RESTORE", b"{d}r", b"0", payload]);
    s.cmd("GET {d}r");
    s.args(&[b"RESTORE", b"{d}r", b"0", payload]);
    s.args(&[b"RESTORE", b"{d}r", b"0", payload, b"REPLACE"]);
    s.cmd("RESTORE {d}r2 0 garbage");
    s.cmd("COPY {d}s {d}scopy");
    s.cmd("COPY {d}s {d}scopy");
    s.cmd("COPY {d}s {d}scopy REPLACE");
    s.cmd("RENAME {d}scopy {d}sren");
    s.cmd("RENAME {d}missing {d}x9");
    s.cmd("RENAMENX {d}sren {d}s");
    s.cmd("RENAMENX {d}sren {d}sren2");
    s.cmd("SET {d}t v");
    s.cmd("TTL {d}t");
    s.cmd("PTTL {d}t");
    s.cmd("TTL {d}missing");
    s.cmd("PTTL {d}missing");
    s.cmd("EXPIRETIME {d}t");
    s.cmd("EXPIRETIME {d}missing");
    s.cmd("EXPIRE {d}t 1000");
    s.cmd("TTL {d}t");
    s.cmd("EXPIRE {d}t 500 GT");
    s.cmd("EXPIRE {d}t 2000 XX");
    s.cmd("EXPIRE {d}t 10 NX XX");
    s.cmd("EXPIRE {d}t x");
    s.cmd("PEXPIRE {d}t 5000000");
    s.cmd("TTL {d}t");
    s.cmd("EXPIREAT {d}t 4102444800");
    s.cmd("EXPIRETIME {d}t");
    s.cmd("PEXPIREAT {d}t 4102444800123");
    s.cmd("PEXPIRETIME {d}t");
    s.cmd("EXPIRETIME {d}t");
    s.cmd("PERSIST {d}t");
    s.cmd("PERSIST {d}t");
    s.cmd("TTL {d}t");
    s.cmd("EXPIRE {d}missing 10");
    s.cmd("RPUSH {d}sortl 3 1 2");
    s.cmd("MSET {d}w_1 30 {d}w_2 20 {d}w_3 10");
    s.cmd("SORT {d}sortl");
    s.cmd("SORT {d}sortl DESC LIMIT 0 2");
    s.cmd("SORT {d}sortl BY {d}w_* GET # GET {d}w_*");
    s.cmd("SORT {d}sortl ALPHA STORE {d}sorted");
    s.cmd("LRANGE {d}sorted 0 -1");
    s.cmd("SORT_RO {d}sortl DESC");
    s.cmd("SORT {d}s");
    s.cmd("SORT_RO {d}sortl STORE {d}x");
}

fn scripting(s: &mut Seq, given: &Given) {
    let eval = |s: &mut Seq, script: &str, rest: &[&str]| {
        let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes()];
        args.extend(rest.iter().map(|a| a.as_bytes()));
        s.args(&args);
    };
    eval(s, "return {1, 'two', {3, 'four'}, 5.9}", &["0"]);
    eval(s, "return {1, false, 3}", &["0"]);
    eval(s, "return true", &["0"]);
    eval(s, "return 3.99", &["0"]);
    eval(s, "return {double=3.5}", &["0"]);
    eval(s, "return {err='ERR my error'}", &["0"]);
    eval(s, "return redis.status_reply('FINE')", &["0"]);
    eval(s, GET_SCRIPT, &["1", "{d}s"]);
    eval(
        s,
        "return {KEYS[1], KEYS[2], ARGV[1]}",
        &["2", "{d}a", "{d}b", "arg"],
    );
    eval(
        s,
        "redis.setresp(3); return redis.call('HGETALL', KEYS[1])",
        &["1", "{d}h"],
    );
    eval(
        s,
        "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], ARGV[1])",
        &["1", "{d}z2", "b"],
    );
    eval(
        s,
        "redis.setresp(3); return redis.call('SMEMBERS', KEYS[1])",
        &["1", "{d}ints2"],
    );
    eval(
        s,
        "redis.setresp(3); return redis.call('GET', KEYS[1])",
        &["1", "{d}missing"],
    );
    eval(s, "redis.setresp(3); return true", &["0"]);
    eval(s, "redis.setresp(3); return false", &["0"]);
    eval(
        s,
        "redis.setresp(3); return redis.call('HGET', KEYS[1], 'nope')",
        &["1", "{d}h"],
    );
    eval(s, "return redis.call('INCR', KEYS[1])", &["1", "{d}s"]);
    eval(s, "return 1", &["2", "{d}a"]);
    s.cmd("EVAL return");
    s.args(&[b"EVAL_RO", GET_SCRIPT.as_bytes(), b"1", b"{d}s"]);
    s.args(&[
        b"EVAL_RO",
        b"return redis.call('SET', KEYS[1], 'x')",
        b"1",
        b"{d}s",
    ]);
    s.args(&[b"SCRIPT", b"LOAD", GET_SCRIPT.as_bytes()]);
    s.cmd(&format!(
        "SCRIPT EXISTS {GET_SCRIPT_SHA} 0000000000000000000000000000000000000000"
    ));
    s.cmd(&format!("EVALSHA {GET_SCRIPT_SHA} 1 {{d}}s"));
    s.cmd(&format!("EVALSHA_RO {GET_SCRIPT_SHA} 1 {{d}}s"));
    s.cmd("EVALSHA ffffffffffffffffffffffffffffffffffffffff 0");
    s.cmd("SCRIPT FLUSH");
    s.cmd(&format!("SCRIPT EXISTS {GET_SCRIPT_SHA}"));
    s.cmd("SCRIPT HELP");
    s.cmd("SCRIPT BOGUS");

    s.args(&[b"FUNCTION", b"LOAD", LIBRARY.as_bytes()]);
    s.args(&[b"FUNCTION", b"LOAD", LIBRARY.as_bytes()]);
    s.cmd("FUNCTION LIST");
    s.cmd("FUNCTION LIST WITHCODE");
    s.cmd("FUNCTION LIST LIBRARYNAME diff*");
    s.cmd("FUNCTION STATS");
    s.cmd("FCALL dro 1 {d}h");
    s.cmd("FCALL_RO dro 1 {d}h");
    s.cmd("FCALL nope 0");
    s.cmd("FUNCTION DUMP");
    s.cmd("FUNCTION DELETE difflib");
    s.cmd("FUNCTION DELETE difflib");
    let payload = given.function_dump.as_slice();
    s.args(&[b"FUNCTION", b"RESTORE", payload]);
    s.args(&[b"FUNCTION", b"RESTORE", payload]);
    s.args(&[b"FUNCTION", b"RESTORE", payload, b"REPLACE"]);
    s.cmd("FUNCTION FLUSH");
    s.cmd("FUNCTION LIST");
    s.cmd("FUNCTION HELP");
}

/// MULTI/EXEC blocks, with the stream reads and pops whose replies change type in RESP3.
fn transactions(s: &mut Seq) {
    s.cmd("XADD {d}tx 1-1 f v");
    s.cmd("XGROUP CREATE {d}tx g 0");
    s.cmd("ZADD {d}tz 1 a 2 b 3 c");
    s.cmd("MULTI");
    s.cmd("SET {d}tk 1");
    s.cmd("INCR {d}tk");
    s.cmd("XREAD COUNT 1 STREAMS {d}tx 0");
    s.cmd("XREADGROUP GROUP g c COUNT 1 STREAMS {d}tx >");
    s.cmd("XREAD STREAMS {d}missing 0");
    s.cmd("ZPOPMIN {d}tz");
    s.cmd("ZPOPMAX {d}tz 2");
    s.cmd("HGETALL {d}h");
    s.cmd("ZSCORE {d}z2 b");
    s.cmd("GET {d}missing");
    s.cmd("HRANDFIELD {d}h1 1 WITHVALUES");
    s.cmd("LCS {d}lcs1 {d}lcs2 IDX");
    s.cmd("XINFO GROUPS {d}tx");
    s.cmd("SMEMBERS {d}ints2");
    s.cmd("LPUSH {d}tk x");
    s.cmd("EXEC");
    s.cmd("MULTI");
    s.cmd("GET {d}tk");
    s.cmd("DISCARD");
    s.cmd("EXEC");
    s.cmd("DISCARD");
    s.cmd("MULTI");
    s.cmd("GET");
    s.cmd("SET {d}tk 2");
    s.cmd("EXEC");
    s.cmd("GET {d}tk");
    s.cmd("MULTI");
    s.cmd("MULTI");
    s.cmd("WATCH {d}tk");
    s.cmd("DISCARD");
    s.cmd("WATCH {d}tk");
    s.cmd("MULTI");
    s.cmd("GET {d}tk");
    s.cmd("EXEC");
    s.cmd("WATCH {d}tk");
    s.cmd("UNWATCH");
    s.cmd("UNWATCH");
}

/// Subscriptions on the client's own connection (in RESP2 only the subscribe family and PING
/// may run meanwhile), and PUBLISH / PUBSUB with no subscriber.
fn pubsub(s: &mut Seq) {
    s.replies("SUBSCRIBE {d}ch1 {d}ch2", 2);
    s.cmd("PSUBSCRIBE p:*");
    s.cmd("SSUBSCRIBE {d}sh");
    s.cmd("PING");
    s.cmd("PING hi");
    s.cmd("GET {d}s");
    s.replies("UNSUBSCRIBE {d}ch1 {d}ch2", 2);
    s.cmd("PUNSUBSCRIBE p:*");
    s.cmd("SUNSUBSCRIBE {d}sh");
    s.cmd("UNSUBSCRIBE");
    s.cmd("PUNSUBSCRIBE");
    s.cmd("SUNSUBSCRIBE");
    s.cmd("PUBLISH {d}ch1 m");
    s.cmd("SPUBLISH {d}sh m");
    s.cmd("PUBSUB CHANNELS");
    s.cmd("PUBSUB NUMSUB {d}ch1");
    s.cmd("PUBSUB NUMPAT");
    s.cmd("PUBSUB SHARDCHANNELS");
    s.cmd("PUBSUB SHARDNUMSUB {d}sh");
    s.cmd("PUBSUB BOGUS");
}

fn server(s: &mut Seq) {
    s.cmd("COMMAND COUNT");
    s.cmd("COMMAND INFO GET");
    s.cmd("COMMAND INFO get nope");
    s.cmd("COMMAND GETKEYS SET k v");
    s.cmd("COMMAND GETKEYS GET");
    s.cmd("COMMAND DOCS GET");
    s.cmd("COMMAND LIST FILTERBY PATTERN xad*");
    s.cmd("CONFIG SET maxmemory-policy noeviction");
    s.cmd("CONFIG SET bogus-option 1");
    s.cmd("CONFIG RESETSTAT");
    s.cmd("LOLWUT");
}

/// Commands over the whole keyspace, after every family left keys behind.
fn keyspace_wide(s: &mut Seq) {
    s.cmd("DBSIZE");
    s.cmd("KEYS *");
    s.cmd("KEYS {d}m*");
    s.cmd("KEYS nothing*");
    s.cmd("SCAN 0 COUNT 7");
    s.cmd("SCAN 0 MATCH {d}z* COUNT 100");
    s.cmd("SCAN 0 TYPE hash");
    s.cmd("SCAN x");
    s.cmd("FLUSHDB");
    s.cmd("DBSIZE");
    s.cmd("SET {d}s again");
    s.cmd("FLUSHALL SYNC");
    s.cmd("DBSIZE");
    s.cmd("FLUSHALL BOGUS");
}

/// RESET (back to RESP2, no name), then QUIT, which closes the connection.
fn last(s: &mut Seq) {
    s.cmd("CLIENT SETNAME before-reset");
    s.cmd("RESET");
    s.cmd("CLIENT GETNAME");
    s.cmd("GET {d}missing");
    s.cmd("HGETALL {d}missing");
    s.cmd("QUIT");
}
