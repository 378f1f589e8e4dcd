// scripts/clients/record.mjs - what the Node.js scenarios of scripts/clients-check.sh share.
//
// The command line (--modules DIR --port PORT --protocol 2|3 --out FILE --timeout SECONDS
// [--tls-ca FILE]) and the TLS settings --tls-ca asks for, the loading of a client library from
// the installed node_modules, the conversion of replies to JSON-able values (Buffers become
// strings, Maps objects, Sets sorted arrays, errors {"error": message}), and the Recorder that
// runs each step with a timeout: a step that takes longer is recorded as {"error": "timeout"} and
// the scenario is asked to reconnect, so that a hang shows as a difference instead of stopping
// the run.

import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export function parseArgs(argv) {
  const opts = { timeout: 5 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    opts[key] = argv[i + 1];
  }
  for (const need of ["modules", "port", "protocol", "out"]) {
    if (opts[need] === undefined) throw new Error(`missing --${need}`);
  }
  opts.port = Number(opts.port);
  opts.protocol = Number(opts.protocol);
  opts.timeout = Number(opts.timeout);
  opts.tls = tlsOf(opts["tls-ca"]);
  return opts;
}

// With --tls-ca FILE: what both libraries hand to Node's tls.connect, i.e. trust only that CA and
// check the certificate against the name "localhost" (it is the servername, sent as SNI: Node
// takes no IP address there, so the connection goes to 127.0.0.1 and the name checked is
// localhost, the certificate's DNS entry). Without it: null, and the scenarios connect in plain
// TCP exactly as they did before TLS was a choice.
function tlsOf(caFile) {
  if (caFile === undefined) return null;
  return { ca: readFileSync(caFile), servername: "localhost", rejectUnauthorized: true };
}

// The library NAME as installed under DIR/node_modules, and its version.
export function load(dir, name) {
  const require = createRequire(join(resolve(dir), "node_modules", ".resolve.js"));
  const { version } = JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8"));
  return { lib: require(name), version, major: Number(version.split(".")[0]) };
}

export function errorOf(e) {
  // Redis error replies: their text alone; anything else (connection closed, ...) with its class.
  const cls = e?.constructor?.name ?? "Error";
  if (/Reply|SimpleError|BlobError/.test(cls)) return { error: e.message };
  return { error: `${cls}: ${e?.message ?? e}` };
}

const byJson = (a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : JSON.stringify(a) > JSON.stringify(b) ? 1 : 0);

export function jsonable(v) {
  if (v === undefined || v === null) return null;
  if (Buffer.isBuffer(v)) return v.toString("utf8");
  if (v instanceof Error) return errorOf(v);
  if (Array.isArray(v)) return v.map(jsonable);
  if (v instanceof Map) {
    return Object.fromEntries(
      [...v].map(([k, x]) => [typeof k === "string" ? k : JSON.stringify(jsonable(k)), jsonable(x)]),
    );
  }
  if (v instanceof Set) return [...v].map(jsonable).sort(byJson);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number" && !Number.isFinite(v)) return String(v); // JSON has no NaN or infinities
  if (typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonable(x)]));
  return v;
}

// Replies whose order Redis does not define (sets, random picks): sorted, shape kept.
export const unordered = (v) => jsonable(v).sort(byJson);

const TIMEOUT = Symbol("timeout");

export class Recorder {
  // onTimeout: called after a step timed out, to replace the connections it may have left busy.
  // The recording is written to `out` after every step, so a crash keeps what came before.
  constructor(timeoutSeconds, out, onTimeout) {
    this.ms = timeoutSeconds * 1000;
    this.out = out;
    this.onTimeout = onTimeout;
    this.steps = [];
  }

  // ms: this step's own timeout, for a step that waits for something on purpose.
  async step(name, fn, ms = this.ms) {
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(() => resolve(TIMEOUT), ms)));
    const work = Promise.resolve().then(fn);
    work.catch(() => {}); // a step given up on may still fail later; that is not news
    let value;
    try {
      const v = await Promise.race([work, late]);
      if (v === TIMEOUT) {
        value = { error: "timeout" };
        await this.onTimeout().catch(() => {}); // the next steps will say what is wrong
      } else {
        value = jsonable(v);
      }
    } catch (e) {
      value = errorOf(e);
    } finally {
      clearTimeout(timer);
    }
    this.steps.push([name, value]);
    writeFileSync(this.out, JSON.stringify({ steps: this.steps }, null, 1));
    return value;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// CLIENT INFO's line "k=v k=v ..." as an object.
export function parseClientInfo(line) {
  return Object.fromEntries(
    String(line)
      .trim()
      .split(" ")
      .map((kv) => {
        const i = kv.indexOf("=");
        return [kv.slice(0, i), kv.slice(i + 1)];
      }),
  );
}

// Fields of CLIENT INFO that do not depend on the server, connection or time: id, addresses,
// fd, ages and buffer or memory figures differ between servers and are left out.
export function stableClientInfo(info) {
  const keep = ["name", "db", "sub", "psub", "multi", "flags", "cmd", "user", "resp"];
  return { fields: Object.keys(info).sort(), ...Object.fromEntries(keep.map((k) => [k, info[k] ?? null])) };
}

// HELLO's reply without `version` (strata reports the command set it implements) and `id`.
export function stableHello(reply) {
  let map = reply;
  if (Array.isArray(reply)) {
    map = {};
    for (let i = 0; i + 1 < reply.length; i += 2) map[reply[i]] = reply[i + 1];
  }
  map = jsonable(map);
  delete map.version;
  delete map.id;
  return map;
}
