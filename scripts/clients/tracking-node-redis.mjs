// scripts/clients/tracking-node-redis.mjs - the node-redis client-side caching scenario of
// scripts/clients-check.sh; the same steps as tracking.py, in node-redis's own calls.
//
// A client created with `RESP: 3, clientSideCache: {...}` (node-redis turns CLIENT TRACKING on
// and keeps the replies of reads in memory, dropped on the server's `>invalidate` pushes); one
// key read twice, then changed by another client through the same endpoint, on the Redis node
// that holds it (EXISTS on every --nodes port; for a plain redis-server, itself), by the
// caching client itself, and a key that expires (SET PX 1000). After each change the scenario waits
// for the cache's "invalidate" event for the key, then reads again: the new value must come back
// from the server, and the read after that from the cache. Then 200 times: the caching client
// writes the key and reads it at once, which must return what it wrote (read your own write).
//
// "Served from the cache" is told twice: by the cache's own counters (stats(): hitCount,
// missCount) and by the nodes (the GETs they ran, INFO commandstats, summed over --nodes).
// The recording has the steps (see record.mjs), "stale" (reads that returned an older value
// after the invalidation had come, or never came) and "timings" (ms from the write's reply to
// the invalidation; not compared).
//
// Usage: node tracking-node-redis.mjs --modules DIR --port PORT --nodes PORT[,PORT...]
//          --out FILE [--timeout SECONDS] [--tls-ca FILE]
//        node tracking-node-redis.mjs --modules DIR --supports-csc
// --nodes are plain (not TLS) ports. node-redis 5 and later (clientSideCache came with 5.0).

import { readFileSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { Recorder, load, parseArgs } from "./record.mjs";

const argv = process.argv.slice(2);
if (argv.includes("--supports-csc")) {
  const { version, major } = load(argv[argv.indexOf("--modules") + 1], "redis");
  console.log(major >= 5 ? "yes" : `no: node-redis ${version} has no client-side cache (it came with 5.0)`);
  process.exit(0);
}
const opts = parseArgs([...argv, "--protocol", "3"]);
const { lib } = load(opts.modules, "redis");
const { createClient } = lib;

const KEY = "csc:key";
const EXPIRING = "csc:expiring";
// Long enough for the two reads before it to come first on a loaded machine.
const EXPIRE_MS = 1000;
const T = opts.timeout * 1000;

async function connect(port, extra = {}, tls = opts.tls) {
  const c = createClient({
    socket: {
      host: "127.0.0.1",
      port,
      connectTimeout: T,
      reconnectStrategy: false,
      ...(tls ? { tls: true, ...tls } : {}),
    },
    ...extra,
  });
  c.on("error", () => {}); // failures are reported by the commands themselves
  await c.connect();
  return c;
}

// The caching client: RESP3 (node-redis caches only there), an unbounded cache, no TTL of its own.
const caching = { RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0, evictPolicy: "LRU" } };

const nodePorts = String(opts.nodes).split(",").map(Number);
let c, writer, nodes;
const s = new Recorder(opts.timeout, opts.out, async () => {
  // A step that hung: the next steps run on new connections (and a new, empty cache).
  for (const x of [c, writer]) {
    try {
      x?.destroy();
    } catch {
      /* already closed */
    }
  }
  c = await connect(opts.port, caching);
  writer = await connect(opts.port);
});
const step = (name, fn, ms) => s.step(name, fn, ms);
const stale = [];
const timings = {};

async function nodeGets() {
  let total = 0;
  for (const n of nodes) {
    const m = /cmdstat_get:calls=(\d+)/.exec(await n.info("commandstats"));
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

async function reads(key, count) {
  const cache = c.clientSideCache;
  const before = cache.stats();
  const g0 = await nodeGets();
  const values = [];
  for (let i = 0; i < count; i++) values.push(await c.get(key));
  const after = cache.stats();
  return {
    values,
    "cache hits": after.hitCount - before.hitCount,
    "cache misses": after.missCount - before.missCount,
    "GETs the nodes ran": (await nodeGets()) - g0,
  };
}

// Resolves with the time the cache dropped `key` (or everything), or null after `ms`.
function invalidationOf(key) {
  const cache = c.clientSideCache;
  let done;
  const arrived = new Promise((resolve) => (done = resolve));
  const on = (k) => {
    if (k === null || String(k) === key) done(performance.now());
  };
  cache.on("invalidate", on);
  return {
    within: async (ms) => {
      let timer;
      const late = new Promise((resolve) => (timer = setTimeout(() => resolve(null), ms)));
      const t = await Promise.race([arrived, late]);
      clearTimeout(timer);
      cache.off("invalidate", on);
      return t;
    },
  };
}

async function readAfter(label, key, expected) {
  const r = await reads(key, 1);
  if (r.values[0] !== expected) {
    stale.push(
      `${label}: GET returned ${JSON.stringify(r.values[0])}, the last write left ${JSON.stringify(expected)}`,
    );
  }
  return r;
}

async function change(label, write, key, expected) {
  // Listening before the write: with a plain redis-server the push may come before the reply.
  const invalidation = invalidationOf(key);
  let at = null;
  await step(`${label}: write`, async () => {
    const result = await write();
    at = performance.now();
    return result;
  });
  if (at === null) return; // the write failed: recorded
  await step(
    `${label}: invalidation received`,
    async () => {
      const t = await invalidation.within(T);
      timings[label] = t === null ? null : Math.round(Math.max(0, t - at) * 100) / 100;
      return t !== null;
    },
    T + 1000,
  );
  await step(`${label}: next GET (from the server)`, () => readAfter(label, key, expected));
  await step(`${label}: GET again (from the cache)`, () => readAfter(`${label}, again`, key, expected));
}

await step("setup: DEL the scenario's keys", async () => {
  nodes = await Promise.all(nodePorts.map((p) => connect(p, {}, null)));
  writer = await connect(opts.port); // another application connection, no cache
  return (await writer.del([KEY, EXPIRING])) >= 0;
});
await step("connect with clientSideCache (RESP3)", async () => {
  c = await connect(opts.port, caching);
  return c.ping();
});
await step("CLIENT TRACKINGINFO", () => c.sendCommand(["CLIENT", "TRACKINGINFO"]));

// --- one key read twice: the second read from memory ---------------------------------------
await step("SET by another client", () => writer.set(KEY, "v1"));
await step("GET twice", () => reads(KEY, 2));

// --- the key changes: each time the cached value must go --------------------------------------
await change("write by another client through the same endpoint", () => writer.set(KEY, "v2"), KEY, "v2");
let holders = [];
await step("nodes holding the key (EXISTS on each)", async () => {
  holders = [];
  for (const n of nodes) if ((await n.exists(KEY)) === 1) holders.push(n);
  return holders.length;
});
await change(
  "write on the node holding the key",
  async () => (holders.length ? Promise.all(holders.map((n) => n.set(KEY, "v3"))) : null),
  KEY,
  "v3",
);
await change("write by the caching client itself", () => c.set(KEY, "v4"), KEY, "v4");

// Read your own write: the GET right after the client's own SET must not come from the cache.
// Redis writes the invalidation of a client's own write together with the write's reply, so
// node-redis has dropped the entry before the SET's promise resolves. (Right after another
// client's write, a GET from the cache may be older on Redis too: that push and the other
// client's reply travel on different connections. Not counted.)
const OWN_WRITES = 200;
await step(`write by the caching client itself, then GET at once (x${OWN_WRITES})`, async () => {
  let older = 0;
  for (let i = 0; i < OWN_WRITES; i++) {
    await c.get(KEY); // cached (filled by the previous round's GET)
    await c.set(KEY, `own${i}`);
    if ((await c.get(KEY)) !== `own${i}`) older++;
  }
  if (older) {
    stale.push(
      `write by the caching client itself, then GET at once: ${older} of ${OWN_WRITES} GETs ` +
        "returned the value from before the client's own write",
    );
  }
  return { GETs: OWN_WRITES, "older than the client's own write": older };
});

// --- a key that expires ---------------------------------------------------------------------
let expiresAt = 0;
await step(`SET PX ${EXPIRE_MS} by another client`, async () => {
  const r = await writer.set(EXPIRING, "soon", { PX: EXPIRE_MS });
  expiresAt = performance.now() + EXPIRE_MS;
  return r;
});
const expiry = invalidationOf(EXPIRING);
await step("GET twice before it expires", () => reads(EXPIRING, 2));
await step(
  "expiry: invalidation received",
  async () => {
    // Twice the step timeout: a node finds an expired key by sampling (see tracking.py).
    const t = await expiry.within(2 * T + EXPIRE_MS);
    timings["expiry (after the TTL)"] = t === null ? null : Math.round(Math.max(0, t - expiresAt) * 100) / 100;
    return t !== null;
  },
  2 * T + EXPIRE_MS + 1000,
);
await step("expiry: next GET", () => readAfter("expiry", EXPIRING, null));

const recording = JSON.parse(readFileSync(opts.out, "utf8"));
writeFileSync(opts.out, JSON.stringify({ ...recording, stale, timings }, null, 1));
for (const x of [c, writer, ...(nodes ?? [])]) {
  try {
    x?.destroy();
  } catch {
    /* already closed */
  }
}
