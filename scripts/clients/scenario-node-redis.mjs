// scripts/clients/scenario-node-redis.mjs - the node-redis scenario of scripts/clients-check.sh.
//
// Connects to one server (a plain redis-server or strata) with node-redis (the `redis` npm
// package), runs the same steps as scenario.py in node-redis's own calls (handshake, every data
// type, pipelines, MULTI/WATCH, pub/sub, Lua, SCAN, keyspace commands) and writes what each step
// returned to a JSON file (see record.mjs). node-redis 5 and later speak RESP3 (`RESP: 3`);
// node-redis 4 speaks RESP2 only: `--supports-resp3` prints which. Written for the current
// major's API (5.x / 6.x: camelCase commands, options objects, SCAN pages).
//
// Usage: node scenario-node-redis.mjs --modules DIR --port PORT --protocol 2|3 --out FILE
//          [--timeout SECONDS] [--tls-ca FILE]
//        node scenario-node-redis.mjs --modules DIR --supports-resp3
// The server's database is flushed (FLUSHALL) at the start. With --tls-ca, every connection is
// TLS (node-redis `socket: {tls: true, ca, servername: "localhost"}`, see record.mjs; r.duplicate()
// for the subscriber keeps them).

import { Recorder, load, parseArgs, sleep, stableClientInfo, stableHello, unordered } from "./record.mjs";

const argv = process.argv.slice(2);
if (argv.includes("--supports-resp3")) {
  const { version, major } = load(argv[argv.indexOf("--modules") + 1], "redis");
  console.log(major >= 5 ? "yes" : `no: node-redis ${version} speaks RESP2 only (RESP3 came with 5.0)`);
  process.exit(0);
}
const opts = parseArgs(argv);
const { lib, major } = load(opts.modules, "redis");
const { createClient, RESP_TYPES } = lib;

async function connect(extra = {}) {
  const c = createClient({
    socket: {
      host: "127.0.0.1",
      port: opts.port,
      connectTimeout: opts.timeout * 1000,
      reconnectStrategy: false,
      ...(opts.tls ? { tls: true, ...opts.tls } : {}),
    },
    ...(major >= 5 ? { RESP: opts.protocol } : {}),
    ...extra,
  });
  c.on("error", () => {}); // failures are reported by the commands themselves
  await c.connect();
  return c;
}

let r, other; // the application's connection and a second one
const s = new Recorder(opts.timeout, opts.out, async () => {
  for (const c of [r, other]) {
    try {
      c?.destroy();
    } catch {
      /* already closed */
    }
  }
  r = await connect({ name: "clients-check" });
  other = await connect();
});
const step = (name, fn) => s.step(name, fn);

await step("connect", async () => {
  r = await connect({ name: "clients-check" });
  other = await connect();
  return "connected";
});

// --- handshake: node-redis's own connect (HELLO 3 SETNAME in RESP3, CLIENT SETINFO) -----------
await step("connect: PING", () => r.ping());
await step("connect: CLIENT GETNAME", () => r.clientGetName());
await step("connect: CLIENT INFO (stable fields)", async () => stableClientInfo(await r.clientInfo()));
await step("connect: HELLO (without version, id)", async () =>
  stableHello(await r.sendCommand(["HELLO", String(opts.protocol)])),
);
await step("connect: SELECT 0", () => r.sendCommand(["SELECT", "0"]));
await step("connect: ECHO", () => r.echo("héllo"));
await step("FLUSHALL", () => r.flushAll());

// --- strings ---------------------------------------------------------------------------------
await step("string SET", () => r.set("str:a", "hello"));
await step("string SET NX on existing", () => r.set("str:a", "x", { NX: true }));
await step("string SET XX GET", () => r.set("str:a", "world", { XX: true, GET: true }));
await step("string GET", () => r.get("str:a"));
await step("string GET missing", () => r.get("str:nope"));
await step("string SET EX then KEEPTTL", async () => [
  await r.set("str:t", "1", { EX: 100 }),
  await r.set("str:t", "2", { KEEPTTL: true }),
]);
// TTLs are compared as "within the expected range": a second may tick between two calls.
await step("string TTL kept (90..100)", async () => {
  const t = await r.ttl("str:t");
  return t >= 90 && t <= 100;
});
await step("string GETEX EX 50", () => r.getEx("str:a", { EX: 50 }));
await step("string GETEX PERSIST", async () => [await r.getEx("str:a", { PERSIST: true }), await r.ttl("str:a")]);
await step("string GETDEL", () => r.getDel("str:a"));
await step("string INCR INCRBY DECRBY", async () => [
  await r.incr("str:n"),
  await r.incrBy("str:n", 10),
  await r.decrBy("str:n", 3),
]);
await step("string INCRBYFLOAT", async () => [await r.incrByFloat("str:f", 1.5), await r.incrByFloat("str:f", 225)]);
await step("string INCR on a non-integer", async () => [await r.set("str:word", "abc"), await r.incr("str:word")]);
await step("string APPEND STRLEN GETRANGE SETRANGE", async () => [
  await r.append("str:s", "Hello"),
  await r.append("str:s", " World"),
  await r.strLen("str:s"),
  await r.getRange("str:s", 0, 4),
  await r.setRange("str:s", 6, "Redis"),
  await r.get("str:s"),
]);
const many = Array.from({ length: 10 }, (_, i) => `str:m${i}`);
await step("string MSET over nodes", () => r.mSet(Object.fromEntries(many.map((k, i) => [k, String(i)]))));
await step("string MGET over nodes", () => r.mGet([...many, "str:none"]));
await step("string MSETNX (hash tag)", async () => [
  await r.mSetNX({ "{str}x": "1", "{str}y": "2" }),
  await r.mSetNX({ "{str}x": "3", "{str}z": "4" }),
]);
await step("string binary value", async () => {
  const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const rb = r.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  return [await r.set("str:bin", bin), (await rb.get("str:bin")).equals(bin)];
});

// --- hashes ----------------------------------------------------------------------------------
await step("hash HSET object", () => r.hSet("hash:h", { f1: "v1", f2: "v2", n: "5" }));
await step("hash HGET HMGET", async () => [await r.hGet("hash:h", "f1"), await r.hmGet("hash:h", ["f1", "zz", "f2"])]);
await step("hash HGETALL", () => r.hGetAll("hash:h"));
await step("hash HGETALL missing", () => r.hGetAll("hash:none"));
await step("hash HINCRBY HINCRBYFLOAT", async () => [
  await r.hIncrBy("hash:h", "n", 2),
  await r.hIncrByFloat("hash:h", "x", 0.5),
]);
await step("hash HKEYS HVALS HLEN", async () => [
  await r.hKeys("hash:h"),
  await r.hVals("hash:h"),
  await r.hLen("hash:h"),
]);
await step("hash HSCAN", () => r.hScan("hash:h", "0"));
// Random picks: a count of the whole hash returns every field once, in any order.
await step("hash HRANDFIELD count WITHVALUES", async () => unordered(await r.hRandFieldCountWithValues("hash:h", 4)));
await step("hash HDEL", async () => [await r.hDel("hash:h", ["f1", "nope"]), await r.hGetAll("hash:h")]);

// --- lists -----------------------------------------------------------------------------------
await step("list RPUSH LPUSH LRANGE", async () => [
  await r.rPush("list:l", ["a", "b", "c", "d"]),
  await r.lPush("list:l", "z"),
  await r.lRange("list:l", 0, -1),
]);
await step("list LPOS LINSERT LSET LREM LTRIM", async () => [
  await r.lPos("list:l", "c"),
  await r.lInsert("list:l", "BEFORE", "c", "bb"),
  await r.lSet("list:l", 0, "zz"),
  await r.lRem("list:l", 0, "bb"),
  await r.lTrim("list:l", 0, 3),
  await r.lRange("list:l", 0, -1),
]);
await step("list LPOP count RPOP LLEN", async () => [
  await r.lPopCount("list:l", 2),
  await r.rPop("list:l"),
  await r.lLen("list:l"),
]);
await step("list LMOVE (hash tag)", async () => [
  await r.rPush("{list}a", ["1", "2", "3"]),
  await r.lMove("{list}a", "{list}b", "LEFT", "RIGHT"),
]);
await step("list LMPOP", () => r.lmPop(["{list}none", "{list}a"], "LEFT", { COUNT: 5 }));
await step("list BLPOP (element ready)", async () => [await r.rPush("list:b", "x"), await r.blPop("list:b", 1)]);
await step("list BLPOP (times out after 0.1 s)", () => r.blPop("list:empty", 0.1));

// --- sets ------------------------------------------------------------------------------------
await step("set SADD SCARD", async () => [await r.sAdd("set:s", ["a", "b", "c", "d"]), await r.sCard("set:s")]);
// RESP3 set replies (~) arrive as arrays unless the client asks for Sets: these steps do, so that
// a set sent as an array (or the other way round) shows.
const withSets = () => r.withTypeMapping({ [RESP_TYPES.SET]: Set });
const kindOf = (v) => (v instanceof Set ? "set" : Array.isArray(v) ? "array" : typeof v);
await step("set SMEMBERS", async () => {
  const reply = await withSets().sMembers("set:s");
  return { kind: kindOf(reply), members: unordered([...reply]) };
});
await step("set SISMEMBER SMISMEMBER", async () => [
  await r.sIsMember("set:s", "a"),
  await r.smIsMember("set:s", ["a", "x", "c"]),
]);
await step("set SINTER SUNION SDIFF (hash tag)", async () => [
  await r.sAdd("{set}a", ["1", "2", "3"]),
  await r.sAdd("{set}b", ["2", "3", "4"]),
  unordered(await r.sInter(["{set}a", "{set}b"])),
  unordered(await r.sUnion(["{set}a", "{set}b"])),
  unordered(await r.sDiff(["{set}a", "{set}b"])),
]);
await step("set SINTERCARD", () => r.sInterCard(["{set}a", "{set}b"]));
await step("set SPOP count", async () => {
  // Which members SPOP takes is random: compare the reply's shape and size, and that the popped
  // and the remaining members together are the set.
  const reply = await withSets().sPopCount("set:s", 2);
  const popped = [...reply];
  return { kind: kindOf(reply), popped: popped.length, all: unordered([...popped, ...(await r.sMembers("set:s"))]) };
});
await step("set SPOP count past the end", async () => [
  await r.sAdd("set:p", ["a", "b"]),
  unordered(await r.sPopCount("set:p", 10)),
]);

// --- sorted sets -----------------------------------------------------------------------------
await step("zset ZADD", () =>
  r.zAdd("zset:z", [
    { score: 1, value: "a" },
    { score: 2.5, value: "b" },
    { score: 3, value: "c" },
  ]),
);
await step("zset ZADD INCR", () => r.zAddIncr("zset:z", { score: 10, value: "a" }));
await step("zset ZSCORE ZMSCORE", async () => [
  await r.zScore("zset:z", "a"),
  await r.zScore("zset:z", "none"),
  await r.zmScore("zset:z", ["a", "none", "c"]),
]);
await step("zset ZINCRBY", () => r.zIncrBy("zset:z", 0.5, "c"));
await step("zset ZRANGE WITHSCORES", () => r.zRangeWithScores("zset:z", 0, -1));
await step("zset ZRANGE BYSCORE REV WITHSCORES", () =>
  r.zRangeWithScores("zset:z", "+inf", 2, { BY: "SCORE", REV: true }),
);
await step("zset ZRANGEBYSCORE WITHSCORES LIMIT", () =>
  r.zRangeByScoreWithScores("zset:z", 2, "+inf", { LIMIT: { offset: 0, count: 2 } }),
);
await step("zset ZRANDMEMBER count WITHSCORES", async () => unordered(await r.zRandMemberCountWithScores("zset:z", 3)));
await step("zset ZPOPMIN count", () => r.zPopMinCount("zset:z", 2));
await step("zset ZPOPMAX", () => r.zPopMax("zset:z"));
await step("zset ZUNIONSTORE ZINTER WITHSCORES (hash tag)", async () => [
  await r.zAdd("{z}a", [
    { score: 1, value: "x" },
    { score: 2, value: "y" },
  ]),
  await r.zAdd("{z}b", [
    { score: 3, value: "y" },
    { score: 4, value: "w" },
  ]),
  await r.zUnionStore("{z}c", ["{z}a", "{z}b"]),
  await r.zInterWithScores(["{z}a", "{z}b"]),
]);

// --- streams: explicit ids, so that replies do not depend on the clock -----------------------
await step("stream XADD", async () => {
  const ids = [];
  for (let i = 1; i <= 5; i++) ids.push(await r.xAdd("stream:s", `1-${i}`, { n: String(i), who: `w${i}` }));
  return ids;
});
await step("stream XLEN XRANGE", async () => [
  await r.xLen("stream:s"),
  await r.xRange("stream:s", "-", "+", { COUNT: 3 }),
]);
await step("stream XREAD", () => r.xRead({ key: "stream:s", id: "1-3" }, { COUNT: 5 }));
await step("stream XREAD nothing new", () => r.xRead({ key: "stream:s", id: "1-5" }));
await step("stream XGROUP CREATE x2", async () => [
  await r.xGroupCreate("stream:s", "g1", "0"),
  await r.xGroupCreate("stream:s", "g2", "$"),
]);
await step("stream XREADGROUP", () => r.xReadGroup("g1", "c1", { key: "stream:s", id: ">" }, { COUNT: 3 }));
await step("stream XACK XPENDING", async () => [
  await r.xAck("stream:s", "g1", "1-1"),
  await r.xPending("stream:s", "g1"),
]);
await step("stream XINFO STREAM", () => r.xInfoStream("stream:s"));
await step("stream XINFO GROUPS", () => r.xInfoGroups("stream:s"));

// --- geo, hyperloglog, bitmaps, LCS ----------------------------------------------------------
await step("geo GEOADD", () =>
  r.geoAdd("geo:sicily", [
    { longitude: 13.361389, latitude: 38.115556, member: "Palermo" },
    { longitude: 15.087269, latitude: 37.502669, member: "Catania" },
  ]),
);
await step("geo GEOPOS", () => r.geoPos("geo:sicily", ["Palermo", "Catania", "Nowhere"]));
await step("geo GEODIST", () => r.geoDist("geo:sicily", "Palermo", "Catania", "km"));
await step("geo GEOSEARCH WITHDIST WITHCOORD", () =>
  r.geoSearchWith(
    "geo:sicily",
    { longitude: 15, latitude: 37 },
    { radius: 200, unit: "km" },
    ["WITHDIST", "WITHCOORD"],
    { SORT: "ASC" },
  ),
);
await step("hll PFADD PFCOUNT PFMERGE", async () => [
  await r.pfAdd("{hll}a", ["a", "b", "c"]),
  await r.pfAdd("{hll}b", ["c", "d"]),
  await r.pfMerge("{hll}c", ["{hll}a", "{hll}b"]),
  await r.pfCount("{hll}c"),
]);
await step("bitmap SETBIT BITCOUNT BITPOS BITFIELD", async () => [
  await r.setBit("bit:b", 7, 1),
  await r.bitCount("bit:b"),
  await r.bitPos("bit:b", 1),
  await r.bitField("bit:f", [
    { operation: "SET", encoding: "u8", offset: 0, value: 200 },
    { operation: "INCRBY", encoding: "u8", offset: 0, increment: 100 },
    { operation: "GET", encoding: "u4", offset: 0 },
  ]),
]);
await step("lcs LCS", async () => [
  await r.mSet({ "{lcs}a": "ohmytext", "{lcs}b": "mynewtext" }),
  await r.lcs("{lcs}a", "{lcs}b"),
]);
await step("lcs LCS IDX MINMATCHLEN WITHMATCHLEN", () => r.lcsIdxWithMatchLen("{lcs}a", "{lcs}b", { MINMATCHLEN: 2 }));

// --- generic commands and errors -------------------------------------------------------------
await step("generic EXISTS over nodes", () => r.exists(["str:m1", "str:m2", "str:none", "hash:h", "str:m1"]));
await step("generic TYPE", () =>
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
  await r.mGet(["{gen}a", "{gen}b", "{gen}c"]),
]);
await step("generic DEL UNLINK over nodes", async () => [
  await r.del(["str:m3", "str:m4", "str:none"]),
  await r.unlink(["str:m5", "str:m6"]),
]);
await step("error WRONGTYPE", () => r.get("hash:h"));
await step("error unknown command", () => r.sendCommand(["NOSUCHCOMMAND", "x"]));
await step("error wrong arity", () => r.sendCommand(["GET"]));

// --- replicated layers: route: keeps 2 copies, meta: 3 with quorum reads ----------------------
await step("layer route: SET GET", async () => [await r.set("route:q1", "gpt"), await r.get("route:q1")]);
await step("layer meta: HSET HGETALL (quorum read)", async () => [
  await r.hSet("meta:m", { caps: "chat" }),
  await r.hGetAll("meta:m"),
]);
await step("layer route: EXISTS DEL", async () => [
  await r.exists("route:q1"),
  await r.del("route:q1"),
  await r.exists("route:q1"),
]);

// --- pipelines -------------------------------------------------------------------------------
await step("pipeline mixed, non-transactional", () =>
  r
    .multi()
    .set("pipe:a", "1")
    .incr("pipe:a")
    .get("pipe:a")
    .hSet("pipe:h", "f", "v")
    .hGetAll("pipe:h")
    .zAdd("pipe:z", { score: 1.5, value: "m" })
    .zRangeWithScores("pipe:z", 0, -1)
    .get("pipe:none")
    .execAsPipeline(),
);

async function writeThenRead(n, size, rounds) {
  // The pipelines of the issue: N × (SET, GET) sent at once (commands of one tick are written
  // together), replies read after. A hang need not come every time: up to `rounds` rounds, until
  // one goes wrong (as in scenario.py).
  const value = "x".repeat(size);
  let result;
  for (let round = 0; round < rounds; round++) {
    const calls = [];
    for (let i = 0; i < n; i++) calls.push(r.set(`big:${i}`, value), r.get(`big:${i}`));
    const out = await Promise.allSettled(calls);
    const errors = [...new Set(out.filter((x) => x.status === "rejected").map((x) => x.reason.message))].sort();
    result = {
      replies: out.length,
      set_ok: out.filter((x, i) => i % 2 === 0 && x.value === "OK").length,
      get_equal: out.filter((x, i) => i % 2 === 1 && x.value === value).length,
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
    .set("{tx}a", "1")
    .incr("{tx}b")
    .hSet("{tx}h", "k", "v")
    .hGetAll("{tx}h")
    .zAdd("{tx}z", { score: 2, value: "m" })
    .zScore("{tx}z", "m")
    .zRangeWithScores("{tx}z", 0, -1)
    .get("{tx}none")
    .exec(),
);
async function watchExec(touchFromOther) {
  await r.watch("{tx}a");
  const current = Number(await r.get("{tx}a"));
  if (touchFromOther) await other.set("{tx}a", "100");
  return r
    .multi()
    .set("{tx}a", String(current + 1))
    .incr("{tx}b")
    .get("{tx}a")
    .exec();
}
await step("transaction WATCH, EXEC runs", () => watchExec(false));
await step("transaction WATCH, key changed by another client", () => watchExec(true));
// node-redis rejects an EXEC with a failed command; its replies ride on the error.
await step("transaction error inside", () =>
  r
    .multi()
    .set("{tx}s", "x")
    .incr("{tx}s")
    .get("{tx}s")
    .exec()
    .catch((e) => (e.replies ? { replies: e.replies, errorIndexes: e.errorIndexes } : Promise.reject(e))),
);

// --- pub/sub ---------------------------------------------------------------------------------
let sub;
const got = [];
const received = async (n) => {
  while (got.length < n) await sleep(10); // bounded by the step's timeout
  return unordered(got.splice(0, n));
};
await step("pubsub connect a subscriber", async () => {
  sub = r.duplicate();
  sub.on("error", () => {});
  await sub.connect();
  return "connected";
});
await step("pubsub SUBSCRIBE", () =>
  sub.subscribe("chan:news", (message, channel) => got.push(["message", channel, message])),
);
await step("pubsub PUBLISH from another connection", () => r.publish("chan:news", "hello"));
await step("pubsub message received", () => received(1));
await step("pubsub PSUBSCRIBE", () =>
  sub.pSubscribe("chan:*", (message, channel) => got.push(["pmessage", channel, message])),
);
await step("pubsub PUBLISH to channel and pattern", () => r.publish("chan:news", "again"));
await step("pubsub two messages received", () => received(2));
await step("pubsub PUBSUB NUMSUB", () => r.pubSubNumSub("chan:news"));
await step("pubsub UNSUBSCRIBE PUNSUBSCRIBE", async () => [
  await sub.unsubscribe("chan:news"),
  await sub.pUnsubscribe(),
]);
try {
  sub?.destroy();
} catch {
  /* already closed */
}

// --- Lua -------------------------------------------------------------------------------------
await step("lua EVAL returning a table", () =>
  r.eval("return {1, 2, 'three', {4, 'five'}, redis.status_reply('OK'), false, 3.99}"),
);
await step("lua setresp(3) HGETALL", async () => [
  await r.hSet("lua:h", { a: "1", b: "2" }),
  await r.eval("redis.setresp(3); return redis.call('HGETALL', KEYS[1])", { keys: ["lua:h"] }),
]);
await step("lua setresp(3) ZSCORE", async () => [
  await r.zAdd("lua:z", { score: 1.5, value: "m" }),
  await r.eval("redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')", { keys: ["lua:z"] }),
]);
await step("lua SCRIPT LOAD EVALSHA", async () => {
  const sha = await r.scriptLoad("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  return [
    await r.evalSha(sha, { keys: ["lua:n"], arguments: ["5"] }),
    await r.evalSha(sha, { keys: ["lua:n"], arguments: ["2"] }),
  ];
});

// --- server commands -------------------------------------------------------------------------
await step("CONFIG GET maxmemory", () => r.configGet("maxmemory"));

// --- keyspace: a known set of keys in an empty database --------------------------------------
// 200 plain keys, 3 of the replicated route: layer, 2 of meta:; every key must be counted once.
await step("keyspace FLUSHALL", () => r.flushAll());
await step("keyspace write 205 keys", async () => {
  const keys = [
    ...Array.from({ length: 200 }, (_, i) => `scan:${i}`),
    "route:scan0",
    "route:scan1",
    "route:scan2",
    "meta:scan0",
    "meta:scan1",
  ];
  return (await Promise.all(keys.map((k) => r.set(k, "1")))).filter((x) => x === "OK").length;
});
await step("keyspace DBSIZE", () => r.dbSize());
await step("keyspace KEYS * (sorted)", async () => (await r.keys("*")).sort());
await step("keyspace scanIterator (sorted, duplicates kept)", async () => {
  const keys = [];
  for await (const page of r.scanIterator({ COUNT: 50 })) keys.push(...[].concat(page)); // 5+: pages; 4: keys
  return keys.sort();
});

for (const c of [r, other]) {
  try {
    c?.destroy();
  } catch {
    /* already closed */
  }
}
