// scripts/csc-bench/bench.mjs - scripts/csc-bench.sh's measurement: what a client-side-cached GET
// of a hot key costs a node-redis application, through strata and on direct Redis.
//
// Four set-ups, each a node-redis client in RESP3 (so that the cache is the only difference):
//   strata+csc   through strata, `clientSideCache` on
//   strata       through strata, no cache
//   direct+csc   a plain redis-server, `clientSideCache` on
//   direct       a plain redis-server, no cache
// Every round runs each set-up once (in reverse order every other round, so none always runs
// right after the same one): a new client, --warmup GETs of the hot key (the first fills the
// cache), then --requests sequential awaited GETs of it, timed. Around the timed GETs it reads
// the GETs the set-up's nodes ran (INFO commandstats, cmdstat_get, summed over the nodes: for
// strata its nodes, for direct the server itself) and, with the cache on, its hit counter.
// A GET that returns another value than the one set is counted as wrong.
//
// Prints a JSON report on stdout: every run, and per set-up the median ops/s, the median of the
// per-round ratios against the other set-ups, and the nodes' GETs.
//
// Usage: node bench.mjs --modules DIR --strata PORT --strata-nodes PORT,PORT,...
//          --direct PORT --requests N --rounds N --warmup N --value-bytes N

import { performance } from "node:perf_hooks";
import { load } from "../clients/record.mjs";

const opts = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) opts[argv[i].replace(/^--/, "")] = argv[i + 1];
for (const need of ["modules", "strata", "strata-nodes", "direct", "requests", "rounds", "warmup", "value-bytes"]) {
  if (opts[need] === undefined) throw new Error(`missing --${need}`);
}
const requests = Number(opts.requests);
const rounds = Number(opts.rounds);
const warmup = Math.max(1, Number(opts.warmup));
const { lib, version } = load(opts.modules, "redis");
const { createClient } = lib;

const KEY = "csc:hot";
const VALUE = "v".repeat(Number(opts["value-bytes"]));

const targets = {
  strata: { port: Number(opts.strata), nodes: opts["strata-nodes"].split(",").map(Number) },
  direct: { port: Number(opts.direct), nodes: [Number(opts.direct)] },
};
// In this order (reversed every other round): the set-ups compared most closely run next to each
// other, so that their paired ratio compares two runs made a second apart, not a minute.
const setups = [
  { name: "strata+csc", target: "strata", csc: true },
  { name: "direct+csc", target: "direct", csc: true },
  { name: "strata", target: "strata", csc: false },
  { name: "direct", target: "direct", csc: false },
];

async function connect(port, extra = {}) {
  const c = createClient({
    socket: { host: "127.0.0.1", port, connectTimeout: 5000, reconnectStrategy: false },
    ...extra,
  });
  c.on("error", (e) => console.error(`bench.mjs: client error on ${port}: ${e.message}`));
  await c.connect();
  return c;
}

// One plain connection per node, for INFO only.
const observers = {};
for (const [name, t] of Object.entries(targets)) {
  observers[name] = await Promise.all(t.nodes.map((p) => connect(p)));
}

async function nodeGets(target) {
  let total = 0;
  for (const n of observers[target]) {
    const m = /cmdstat_get:calls=(\d+)/.exec(await n.info("commandstats"));
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

async function run(setup) {
  const t = targets[setup.target];
  const c = await connect(t.port, {
    RESP: 3,
    ...(setup.csc ? { clientSideCache: { ttl: 0, maxEntries: 0, evictPolicy: "LRU" } } : {}),
  });
  try {
    let wrong = 0;
    for (let i = 0; i < warmup; i++) if ((await c.get(KEY)) !== VALUE) wrong++;
    const hits0 = setup.csc ? c.clientSideCache.stats().hitCount : 0;
    const gets0 = await nodeGets(setup.target);
    const t0 = performance.now();
    for (let i = 0; i < requests; i++) if ((await c.get(KEY)) !== VALUE) wrong++;
    const seconds = (performance.now() - t0) / 1000;
    const nodeGetsDuring = (await nodeGets(setup.target)) - gets0;
    return {
      setup: setup.name,
      ops: requests / seconds,
      seconds,
      node_gets: nodeGetsDuring,
      cache_hits: setup.csc ? c.clientSideCache.stats().hitCount - hits0 : null,
      wrong,
    };
  } finally {
    c.destroy();
  }
}

// The hot key, written through each target (strata puts it on one of its nodes).
for (const t of Object.values(targets)) {
  const w = await connect(t.port);
  await w.set(KEY, VALUE);
  w.destroy();
}

const runs = [];
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? setups : [...setups].reverse();
  for (const setup of order) {
    const result = { round: r + 1, ...(await run(setup)) };
    runs.push(result);
    console.error(
      `bench.mjs: round ${r + 1}/${rounds} ${setup.name.padEnd(10)} ${Math.round(result.ops)} ops/s, ` +
        `node GETs ${result.node_gets}${result.cache_hits === null ? "" : `, cache hits ${result.cache_hits}`}` +
        (result.wrong ? `, ${result.wrong} WRONG values` : ""),
    );
  }
}
for (const list of Object.values(observers)) for (const n of list) n.destroy();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const of = (name) => runs.filter((x) => x.setup === name);
const summary = {};
for (const { name } of setups) {
  const rs = of(name);
  summary[name] = {
    median_ops: median(rs.map((x) => x.ops)),
    min_ops: Math.min(...rs.map((x) => x.ops)),
    max_ops: Math.max(...rs.map((x) => x.ops)),
    node_gets_per_run: rs.map((x) => x.node_gets),
    cache_hits_per_run: rs.map((x) => x.cache_hits),
    wrong: rs.reduce((a, x) => a + x.wrong, 0),
  };
}
// Ratios of the medians, and "paired": the median of the per-round ratios (both set-ups ran in
// the same round, so a drift of the machine cancels out).
const ratios = [];
for (const [a, b] of [
  ["strata+csc", "strata"],
  ["strata+csc", "direct+csc"],
  ["direct+csc", "direct"],
  ["strata", "direct"],
  ["strata+csc", "direct"],
]) {
  const paired = [];
  for (let r = 1; r <= rounds; r++) {
    const x = runs.find((y) => y.round === r && y.setup === a);
    const y = runs.find((z) => z.round === r && z.setup === b);
    paired.push(x.ops / y.ops);
  }
  ratios.push({ a, b, of_medians: summary[a].median_ops / summary[b].median_ops, paired: median(paired) });
}
console.log(
  JSON.stringify(
    { node_redis: version, requests, rounds, warmup, value_bytes: VALUE.length, runs, summary, ratios },
    null,
    1,
  ),
);
