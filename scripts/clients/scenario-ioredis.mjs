// scripts/clients/scenario-ioredis.mjs - the ioredis scenario of scripts/clients-check.sh.
//
// Connects to one server (a plain redis-server or strata) with ioredis, runs the same steps as
// scenario.py in ioredis's own calls (handshake, every data type, pipelines, MULTI/WATCH,
// pub/sub, Lua, SCAN, keyspace commands) and writes what each step returned to a JSON file
// (see record.mjs). ioredis 6 speaks RESP3 (`protocol: 3`); it is used with
// `replyMapping: "resp3"` so that maps and doubles keep their RESP3 types instead of being
// flattened to RESP2 shapes. Older majors speak RESP2 only: `--supports-resp3` prints why.
//
// Usage: node scenario-ioredis.mjs --modules DIR --port PORT --protocol 2|3 --out FILE
//          [--timeout SECONDS] [--tls-ca FILE]
//        node scenario-ioredis.mjs --modules DIR --supports-resp3
// The server's database is flushed (FLUSHALL) at the start. With --tls-ca, every connection is
// TLS (ioredis `tls: {ca, servername: "localhost"}`, see record.mjs).

import {
  Recorder,
  load,
  parseArgs,
  parseClientInfo,
  sleep,
  stableClientInfo,
  stableHello,
  unordered,
} from "./record.mjs";

const argv = process.argv.slice(2);
if (argv.includes("--supports-resp3")) {
  const { version, major } = load(argv[argv.indexOf("--modules") + 1], "ioredis");
  console.log(major >= 6 ? "yes" : `no: ioredis ${version} speaks RESP2 only (RESP3 came with 6.0)`);
  process.exit(0);
}
const opts = parseArgs(argv);
const { lib, major } = load(opts.modules, "ioredis");
const Redis = lib.default ?? lib;

async function connect(extra = {}) {
  const o = {
    host: "127.0.0.1",
    port: opts.port,
    lazyConnect: true,
    connectTimeout: opts.timeout * 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...(opts.tls ? { tls: opts.tls } : {}),
    ...extra,
  };
  if (major >= 6) {
    o.protocol = opts.protocol;
    if (opts.protocol === 3) o.replyMapping = "resp3";
  }
  const c = new Redis(o);
  c.on("error", () => {}); // failures are reported by the commands themselves
  await c.connect();
  return c;
}

let r, other; // the application's connection and a second one
const s = new Recorder(opts.timeout, opts.out, async () => {
  r?.disconnect();
  other?.disconnect();
  r = await connect({ connectionName: "clients-check" });
  other = await connect();
});
const step = (name, fn) => s.step(name, fn);

await step("connect", async () => {
  r = await connect({ connectionName: "clients-check" });
  other = await connect();
  return "connected";
});

// --- handshake: ioredis's own connect (HELLO 3 in RESP3, CLIENT SETNAME, CLIENT SETINFO) -------
await step("connect: PING", () => r.ping());
await step("connect: CLIENT GETNAME", () => r.client("GETNAME"));
await step("connect: CLIENT INFO (stable fields)", async () =>
  stableClientInfo(parseClientInfo(await r.client("INFO"))),
);
await step("connect: HELLO (without version, id)", async () =>
  stableHello(await r.call("HELLO", String(opts.protocol))),
);
await step("connect: SELECT 0", () => r.select(0));
await step("connect: ECHO", () => r.echo("héllo"));
await step("FLUSHALL", () => r.flushall());

// --- strings ---------------------------------------------------------------------------------
await step("string SET", () => r.set("str:a", "hello"));
await step("string SET NX on existing", () => r.set("str:a", "x", "NX"));
await step("string SET XX GET", () => r.set("str:a", "world", "XX", "GET"));
await step("string GET", () => r.get("str:a"));
await step("string GET missing", () => r.get("str:nope"));
await step("string SET EX then KEEPTTL", async () => [
  await r.set("str:t", "1", "EX", 100),
  await r.set("str:t", "2", "KEEPTTL"),
]);
// TTLs are compared as "within the expected range": a second may tick between two calls.
await step("string TTL kept (90..100)", async () => {
  const t = await r.ttl("str:t");
  return t >= 90 && t <= 100;
});
await step("string GETEX EX 50", () => r.getex("str:a", "EX", 50));
await step("string GETEX PERSIST", async () => [await r.getex("str:a", "PERSIST"), await r.ttl("str:a")]);
await step("string GETDEL", () => r.getdel("str:a"));
await step("string INCR INCRBY DECRBY", async () => [
  await r.incr("str:n"),
  await r.incrby("str:n", 10),
  await r.decrby("str:n", 3),
]);
await step("string INCRBYFLOAT", async () => [
  await r.incrbyfloat("str:f", 1.5),
  await r.incrbyfloat("str:f", "2.25e2"),
]);
await step("string INCR on a non-integer", async () => [await r.set("str:word", "abc"), await r.incr("str:word")]);
await step("string APPEND STRLEN GETRANGE SETRANGE", async () => [
  await r.append("str:s", "Hello"),
  await r.append("str:s", " World"),
  await r.strlen("str:s"),
  await r.getrange("str:s", 0, 4),
  await r.setrange("str:s", 6, "Redis"),
  await r.get("str:s"),
]);
const many = Array.from({ length: 10 }, (_, i) => `str:m${i}`);
await step("string MSET over nodes", () => r.mset(Object.fromEntries(many.map((k, i) => [k, i]))));
await step("string MGET over nodes", () => r.mget(...many, "str:none"));
await step("string MSETNX (hash tag)", async () => [
  await r.msetnx("{str}x", 1, "{str}y", 2),
  await r.msetnx("{str}x", 3, "{str}z", 4),
]);
await step("string binary value", async () => {
  const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return [await r.set("str:bin", bin), (await r.getBuffer("str:bin")).equals(bin)];
});

// --- hashes ----------------------------------------------------------------------------------
await step("hash HSET object", () => r.hset("hash:h", { f1: "v1", f2: "v2", n: 5 }));
await step("hash HGET HMGET", async () => [await r.hget("hash:h", "f1"), await r.hmget("hash:h", "f1", "zz", "f2")]);
await step("hash HGETALL", () => r.hgetall("hash:h"));
await step("hash HGETALL missing", () => r.hgetall("hash:none"));
await step("hash HINCRBY HINCRBYFLOAT", async () => [
  await r.hincrby("hash:h", "n", 2),
  await r.hincrbyfloat("hash:h", "x", 0.5),
]);
await step("hash HKEYS HVALS HLEN", async () => [
  await r.hkeys("hash:h"),
  await r.hvals("hash:h"),
  await r.hlen("hash:h"),
]);
await step("hash HSCAN", () => r.hscan("hash:h", 0));
// Random picks: a count of the whole hash returns every field once, in any order.
await step("hash HRANDFIELD count WITHVALUES", async () => unordered(await r.hrandfield("hash:h", 4, "WITHVALUES")));
await step("hash HDEL", async () => [await r.hdel("hash:h", "f1", "nope"), await r.hgetall("hash:h")]);

// --- lists -----------------------------------------------------------------------------------
await step("list RPUSH LPUSH LRANGE", async () => [
  await r.rpush("list:l", "a", "b", "c", "d"),
  await r.lpush("list:l", "z"),
  await r.lrange("list:l", 0, -1),
]);
await step("list LPOS LINSERT LSET LREM LTRIM", async () => [
  await r.lpos("list:l", "c"),
  await r.linsert("list:l", "BEFORE", "c", "bb"),
  await r.lset("list:l", 0, "zz"),
  await r.lrem("list:l", 0, "bb"),
  await r.ltrim("list:l", 0, 3),
  await r.lrange("list:l", 0, -1),
]);
await step("list LPOP count RPOP LLEN", async () => [
  await r.lpop("list:l", 2),
  await r.rpop("list:l"),
  await r.llen("list:l"),
]);
await step("list LMOVE (hash tag)", async () => [
  await r.rpush("{list}a", 1, 2, 3),
  await r.lmove("{list}a", "{list}b", "LEFT", "RIGHT"),
]);
await step("list LMPOP", () => r.lmpop(2, "{list}none", "{list}a", "LEFT", "COUNT", 5));
await step("list BLPOP (element ready)", async () => [await r.rpush("list:b", "x"), await r.blpop("list:b", 1)]);
await step("list BLPOP (times out after 0.1 s)", () => r.blpop("list:empty", 0.1));

// --- sets ------------------------------------------------------------------------------------
await step("set SADD SCARD", async () => [await r.sadd("set:s", "a", "b", "c", "d"), await r.scard("set:s")]);
await step("set SMEMBERS", async () => unordered(await r.smembers("set:s")));
await step("set SISMEMBER SMISMEMBER", async () => [
  await r.sismember("set:s", "a"),
  await r.smismember("set:s", "a", "x", "c"),
]);
await step("set SINTER SUNION SDIFF (hash tag)", async () => [
  await r.sadd("{set}a", 1, 2, 3),
  await r.sadd("{set}b", 2, 3, 4),
  unordered(await r.sinter("{set}a", "{set}b")),
  unordered(await r.sunion("{set}a", "{set}b")),
  unordered(await r.sdiff("{set}a", "{set}b")),
]);
await step("set SINTERCARD", () => r.sintercard(2, "{set}a", "{set}b"));
await step("set SPOP count", async () => {
  // Which members SPOP takes is random: compare the reply's shape and size, and that the popped
  // and the remaining members together are the set.
  const popped = await r.spop("set:s", 2);
  return {
    array: Array.isArray(popped),
    popped: popped.length,
    all: unordered([...popped, ...(await r.smembers("set:s"))]),
  };
});
await step("set SPOP count past the end", async () => [
  await r.sadd("set:p", "a", "b"),
  unordered(await r.spop("set:p", 10)),
]);

// --- sorted sets -----------------------------------------------------------------------------
await step("zset ZADD", () => r.zadd("zset:z", 1, "a", 2.5, "b", 3, "c"));
await step("zset ZADD INCR", () => r.zadd("zset:z", "INCR", 10, "a"));
await step("zset ZSCORE ZMSCORE", async () => [
  await r.zscore("zset:z", "a"),
  await r.zscore("zset:z", "none"),
  await r.zmscore("zset:z", "a", "none", "c"),
]);
await step("zset ZINCRBY", () => r.zincrby("zset:z", 0.5, "c"));
await step("zset ZRANGE WITHSCORES", () => r.zrange("zset:z", 0, -1, "WITHSCORES"));
await step("zset ZREVRANGE WITHSCORES", () => r.zrevrange("zset:z", 0, 1, "WITHSCORES"));
await step("zset ZRANGEBYSCORE WITHSCORES LIMIT", () =>
  r.zrangebyscore("zset:z", 2, "+inf", "WITHSCORES", "LIMIT", 0, 2),
);
await step("zset ZRANDMEMBER count WITHSCORES", async () => {
  // A count of the whole set returns every member once, in any order. RESP2 replies
  // [member, score, ...], RESP3 [member, score] pairs: the shape is kept, the pairs sorted.
  const reply = await r.zrandmember("zset:z", 3, "WITHSCORES");
  const pairs = Array.isArray(reply[0]);
  return { pairs, sorted: unordered(pairs ? reply : reply.flatMap((x, i) => (i % 2 ? [] : [[x, reply[i + 1]]]))) };
});
await step("zset ZPOPMIN count", () => r.zpopmin("zset:z", 2));
await step("zset ZPOPMAX", () => r.zpopmax("zset:z"));
await step("zset ZUNIONSTORE ZINTER WITHSCORES (hash tag)", async () => [
  await r.zadd("{z}a", 1, "x", 2, "y"),
  await r.zadd("{z}b", 3, "y", 4, "w"),
  await r.zunionstore("{z}c", 2, "{z}a", "{z}b"),
  await r.zinter(2, "{z}a", "{z}b", "WITHSCORES"),
]);

// --- streams: explicit ids, so that replies do not depend on the clock -----------------------
await step("stream XADD", async () => {
  const ids = [];
  for (let i = 1; i <= 5; i++) ids.push(await r.xadd("stream:s", `1-${i}`, "n", i, "who", `w${i}`));
  return ids;
});
await step("stream XLEN XRANGE", async () => [
  await r.xlen("stream:s"),
  await r.xrange("stream:s", "-", "+", "COUNT", 3),
]);
await step("stream XREAD", () => r.xread("COUNT", 5, "STREAMS", "stream:s", "1-3"));
await step("stream XREAD nothing new", () => r.xread("STREAMS", "stream:s", "1-5"));
await step("stream XGROUP CREATE x2", async () => [
  await r.xgroup("CREATE", "stream:s", "g1", "0"),
  await r.xgroup("CREATE", "stream:s", "g2", "$"),
]);
await step("stream XREADGROUP", () => r.xreadgroup("GROUP", "g1", "c1", "COUNT", 3, "STREAMS", "stream:s", ">"));
await step("stream XACK XPENDING", async () => [
  await r.xack("stream:s", "g1", "1-1"),
  await r.xpending("stream:s", "g1"),
]);
await step("stream XINFO STREAM", () => r.xinfo("STREAM", "stream:s"));
await step("stream XINFO GROUPS", () => r.xinfo("GROUPS", "stream:s"));

// --- geo, hyperloglog, bitmaps, LCS ----------------------------------------------------------
await step("geo GEOADD", () =>
  r.geoadd("geo:sicily", 13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"),
);
await step("geo GEOPOS", () => r.geopos("geo:sicily", "Palermo", "Catania", "Nowhere"));
await step("geo GEODIST", () => r.geodist("geo:sicily", "Palermo", "Catania", "km"));
await step("geo GEOSEARCH WITHDIST WITHCOORD", () =>
  r.geosearch("geo:sicily", "FROMLONLAT", 15, 37, "BYRADIUS", 200, "km", "ASC", "WITHCOORD", "WITHDIST"),
);
await step("hll PFADD PFCOUNT PFMERGE", async () => [
  await r.pfadd("{hll}a", "a", "b", "c"),
  await r.pfadd("{hll}b", "c", "d"),
  await r.pfmerge("{hll}c", "{hll}a", "{hll}b"),
  await r.pfcount("{hll}c"),
]);
await step("bitmap SETBIT BITCOUNT BITPOS BITFIELD", async () => [
  await r.setbit("bit:b", 7, 1),
  await r.bitcount("bit:b"),
  await r.bitpos("bit:b", 1),
  await r.bitfield("bit:f", "SET", "u8", 0, 200, "INCRBY", "u8", 0, 100, "GET", "u4", 0),
]);
await step("lcs LCS", async () => [
  await r.mset("{lcs}a", "ohmytext", "{lcs}b", "mynewtext"),
  await r.lcs("{lcs}a", "{lcs}b"),
]);
await step("lcs LCS IDX MINMATCHLEN WITHMATCHLEN", () =>
  r.lcs("{lcs}a", "{lcs}b", "IDX", "MINMATCHLEN", 2, "WITHMATCHLEN"),
);

// --- generic commands and errors -------------------------------------------------------------
await step("generic EXISTS over nodes", () => r.exists("str:m1", "str:m2", "str:none", "hash:h", "str:m1"));
await step("generic TYPE", async () =>
  Promise.all(["str:m1", "hash:h", "list:l", "set:s", "zset:z", "stream:s", "str:none"].map((k) => r.type(k))),
);
await step("generic EXPIRE TTL PERSIST", async () => [
  await r.expire("str:m1", 100),
  (await r.ttl("str:m1")) >= 90,
  await r.persist("str:m1"),
  await r.ttl("str:m1"),
]);
await step("generic RENAME COPY (hash tag)", async () => [
  await r.set("{gen}a", "v"),
  await r.rename("{gen}a", "{gen}b"),
  await r.copy("{gen}b", "{gen}c"),
  await r.mget("{gen}a", "{gen}b", "{gen}c"),
]);
await step("generic DEL UNLINK over nodes", async () => [
  await r.del("str:m3", "str:m4", "str:none"),
  await r.unlink("str:m5", "str:m6"),
]);
await step("error WRONGTYPE", () => r.get("hash:h"));
await step("error unknown command", () => r.call("NOSUCHCOMMAND", "x"));
await step("error wrong arity", () => r.call("GET"));

// --- replicated layers: route: keeps 2 copies, meta: 3 with quorum reads ----------------------
await step("layer route: SET GET", async () => [await r.set("route:q1", "gpt"), await r.get("route:q1")]);
await step("layer meta: HSET HGETALL (quorum read)", async () => [
  await r.hset("meta:m", { caps: "chat" }),
  await r.hgetall("meta:m"),
]);
await step("layer route: EXISTS DEL", async () => [
  await r.exists("route:q1"),
  await r.del("route:q1"),
  await r.exists("route:q1"),
]);

// --- pipelines -------------------------------------------------------------------------------
await step("pipeline mixed, non-transactional", () =>
  r
    .pipeline()
    .set("pipe:a", 1)
    .incr("pipe:a")
    .get("pipe:a")
    .hset("pipe:h", "f", "v")
    .hgetall("pipe:h")
    .zadd("pipe:z", 1.5, "m")
    .zrange("pipe:z", 0, -1, "WITHSCORES")
    .lpush("pipe:a", "x")
    .get("pipe:none")
    .exec(),
);

async function writeThenRead(n, size, rounds) {
  // The pipelines of the issue: N × (SET, GET) sent at once, replies read after. A hang need not
  // come every time: up to `rounds` rounds, until one goes wrong.
  const value = "x".repeat(size);
  let result;
  for (let round = 0; round < rounds; round++) {
    const p = r.pipeline();
    for (let i = 0; i < n; i++) p.set(`big:${i}`, value).get(`big:${i}`);
    const out = await p.exec();
    const errors = [...new Set(out.filter(([e]) => e).map(([e]) => e.message))].sort();
    result = {
      replies: out.length,
      set_ok: out.filter(([, v], i) => i % 2 === 0 && v === "OK").length,
      get_equal: out.filter(([, v], i) => i % 2 === 1 && v === value).length,
      errors,
    };
    if (result.set_ok !== n || result.get_equal !== n || errors.length) break;
  }
  return result;
}
await step("pipeline 400 × (SET 64 KiB, GET)", () => writeThenRead(400, 65536, 2));
await step("pipeline 2000 × (SET 4 KiB, GET)", () => writeThenRead(2000, 4096, 5));
await step("pipeline after the big ones: PING", () => r.ping());

// --- transactions ----------------------------------------------------------------------------
await step("transaction MULTI/EXEC", () =>
  r
    .multi()
    .set("{tx}a", 1)
    .incr("{tx}b")
    .hset("{tx}h", "k", "v")
    .hgetall("{tx}h")
    .zadd("{tx}z", 2, "m")
    .zscore("{tx}z", "m")
    .zrange("{tx}z", 0, -1, "WITHSCORES")
    .get("{tx}none")
    .exec(),
);
async function watchExec(touchFromOther) {
  await r.watch("{tx}a");
  const current = Number(await r.get("{tx}a"));
  if (touchFromOther) await other.set("{tx}a", 100);
  return r
    .multi()
    .set("{tx}a", current + 1)
    .incr("{tx}b")
    .get("{tx}a")
    .exec();
}
await step("transaction WATCH, EXEC runs", () => watchExec(false));
await step("transaction WATCH, key changed by another client", () => watchExec(true));
await step("transaction error inside", () => r.multi().set("{tx}s", "x").incr("{tx}s").get("{tx}s").exec());

// --- pub/sub ---------------------------------------------------------------------------------
let sub;
const got = [];
const received = async (n) => {
  while (got.length < n) await sleep(10); // bounded by the step's timeout
  return unordered(got.splice(0, n));
};
await step("pubsub connect a subscriber", async () => {
  sub = await connect();
  sub.on("message", (channel, message) => got.push(["message", channel, message]));
  sub.on("pmessage", (pattern, channel, message) => got.push(["pmessage", pattern, channel, message]));
  return "connected";
});
await step("pubsub SUBSCRIBE", () => sub.subscribe("chan:news"));
await step("pubsub PUBLISH from another connection", () => r.publish("chan:news", "hello"));
await step("pubsub message received", () => received(1));
await step("pubsub PSUBSCRIBE", () => sub.psubscribe("chan:*"));
await step("pubsub PUBLISH to channel and pattern", () => r.publish("chan:news", "again"));
await step("pubsub two messages received", () => received(2));
await step("pubsub UNSUBSCRIBE PUNSUBSCRIBE", async () => [
  await sub.unsubscribe("chan:news"),
  await sub.punsubscribe(),
]);
sub?.disconnect();

// --- Lua -------------------------------------------------------------------------------------
await step("lua EVAL returning a table", () =>
  r.eval("return {1, 2, 'three', {4, 'five'}, redis.status_reply('OK'), false, 3.99}", 0),
);
await step("lua setresp(3) HGETALL", async () => [
  await r.hset("lua:h", { a: 1, b: 2 }),
  await r.eval("redis.setresp(3); return redis.call('HGETALL', KEYS[1])", 1, "lua:h"),
]);
await step("lua setresp(3) ZSCORE", async () => [
  await r.zadd("lua:z", 1.5, "m"),
  await r.eval("redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')", 1, "lua:z"),
]);
await step("lua defineCommand (EVALSHA)", async () => {
  r.defineCommand("addBy", { numberOfKeys: 1, lua: "return redis.call('INCRBY', KEYS[1], ARGV[1])" });
  return [await r.addBy("lua:n", 5), await r.addBy("lua:n", 2)];
});

// --- server commands -------------------------------------------------------------------------
await step("CONFIG GET maxmemory", () => r.config("GET", "maxmemory"));

// --- keyspace: a known set of keys in an empty database --------------------------------------
// 200 plain keys, 3 of the replicated route: layer, 2 of meta:; every key must be counted once.
await step("keyspace FLUSHALL", () => r.flushall());
await step("keyspace write 205 keys", async () => {
  const p = r.pipeline();
  for (let i = 0; i < 200; i++) p.set(`scan:${i}`, i);
  for (let i = 0; i < 3; i++) p.set(`route:scan${i}`, i);
  for (let i = 0; i < 2; i++) p.set(`meta:scan${i}`, i);
  return (await p.exec()).filter(([e, v]) => !e && v === "OK").length;
});
await step("keyspace DBSIZE", () => r.dbsize());
await step("keyspace KEYS * (sorted)", async () => (await r.keys("*")).sort());
await step(
  "keyspace scanStream (sorted, duplicates kept)",
  () =>
    new Promise((resolve, reject) => {
      const keys = [];
      r.scanStream({ count: 50 })
        .on("data", (page) => keys.push(...page))
        .on("end", () => resolve(keys.sort()))
        .on("error", reject);
    }),
);

r?.disconnect();
other?.disconnect();
