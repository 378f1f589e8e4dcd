#!/usr/bin/env python3
"""Helpers of scripts/bench-compare.sh (Python 3 standard library only). Subcommands:

  probe PORT TEST...   sends each redis-benchmark test's command(s) once to 127.0.0.1:PORT, a
                       new connection each, and prints per test `TEST<tab>ok`,
                       `TEST<tab>unknown` (no probe for it) or `TEST<tab>refused<tab>REASON`
                       (an error reply, or the connection closed or silent), then deletes the
                       keys it wrote.
  tables SECTION ...   the results of one workload as markdown: `redis-benchmark` (medians per
                       target, test and -P, and ratios, from the raw TSV), `mixed` or `router`
                       (key figures from strata bench's JSON report).

A ratio a/b is printed for each of these pairs whose two targets ran: strata/direct,
strata/twemproxy, strata-rf2/strata, twemproxy/direct, strata/baseline.
"""

import argparse
import csv
import json
import os
import socket
import statistics
import sys

PAIRS = [("strata", "direct"), ("strata", "twemproxy"), ("strata-rf2", "strata"),
         ("twemproxy", "direct"), ("strata", "baseline")]

# ---------------------------------------------------------------------------------------------
# probe

K = "bench-probe:"
_LPUSH = ["LPUSH", K + "list", "x"]
_LRANGE = ["LRANGE", K + "list", "0", "99"]
# A probe is a list of commands: argument lists (sent as multibulk) or raw inline lines.
PROBES = {
    "ping": [b"PING\r\n", ["PING"]], "ping_inline": [b"PING\r\n"], "ping_mbulk": [["PING"]],
    "set": [["SET", K + "str", "x"]], "get": [["GET", K + "str"]],
    "incr": [["INCR", K + "counter"]],
    "lpush": [_LPUSH], "rpush": [["RPUSH", K + "list", "x"]],
    "lpop": [["LPOP", K + "list"]], "rpop": [["RPOP", K + "list"]],
    "sadd": [["SADD", K + "set", "x"]], "spop": [["SPOP", K + "set"]],
    "hset": [["HSET", K + "hash", "f", "x"]],
    "zadd": [["ZADD", K + "zset", "0", "x"]], "zpopmin": [["ZPOPMIN", K + "zset"]],
    "mset": [["MSET"] + [a for i in range(10) for a in (f"{K}m{i}", "x")]],
    "xadd": [["XADD", K + "stream", "*", "f", "x"]],
}
# redis-benchmark fills the list with LPUSH before it measures LRANGE.
for _n in ("lrange", "lrange_100", "lrange_300", "lrange_500", "lrange_600"):
    PROBES[_n] = [_LPUSH, _LRANGE]
PROBE_KEYS = [K + k for k in ("str", "counter", "list", "set", "hash", "zset", "stream")] + [
    f"{K}m{i}" for i in range(10)]


def send(port, command):
    """Sends one command on a new connection; returns the first line of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if isinstance(command, bytes):
            s.sendall(command)
        else:
            req = f"*{len(command)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in command)
            s.sendall(req.encode())
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("the connection was closed without a reply")
            buf += chunk
        return buf.split(b"\r\n", 1)[0].decode(errors="replace")


def probe(port, tests):
    for test in tests:
        if test not in PROBES:
            print(f"{test}\tunknown")
            continue
        reason = None
        for command in PROBES[test]:
            what = (f"inline {command.strip().decode()}" if isinstance(command, bytes)
                    else command[0])
            try:
                line = send(port, command)
            except socket.timeout:
                reason = f"no reply to {what} within 5 s"
            except OSError as e:
                reason = f"{what}: {e}"
            else:
                if line.startswith("-"):
                    reason = line[1:]
            if reason:
                break
        print(f"{test}\t" + ("ok" if reason is None else f"refused\t{reason}"))
    for key in PROBE_KEYS:
        try:
            send(port, ["DEL", key])
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# markdown


def table(head, rows, align=None):
    """A markdown table, columns padded (readable as text too); numbers right-aligned."""
    align = align or ["l"] + ["r"] * (len(head) - 1)
    widths = [max(3, *(len(r[i]) for r in [head] + rows)) for i in range(len(head))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    rule = "|" + "|".join((":" if a == "l" else "-") + "-" * w + (":" if a == "r" else "-")
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(head), rule] + [line(r) for r in rows])


def num(x, fmt="{:,.0f}"):
    return "-" if x is None else fmt.format(x)


def r2(x):
    return num(x, "{:.2f}")


def ratio(a, b):
    return None if a is None or not b else a / b


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rounds_text(n):
    return f"{n} round" if str(n) == "1" else f"{n} rounds"


def rows_of(test):
    """The names of the rows redis-benchmark prints for a -t test."""
    return {"lrange": ["LRANGE_100", "LRANGE_300", "LRANGE_500", "LRANGE_600"],
            "ping": ["PING_INLINE", "PING_MBULK"]}.get(test, [test.upper()])


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def redis_benchmark_tables(raw, refused_file, targets, pairs, rounds, tests):
    """Medians per target, test and -P with the pairs' ratios, from the raw TSV."""
    refused = {}
    with open(refused_file) as f:
        for line in f:
            t, test, reason = line.rstrip("\n").split("\t", 2)
            for name in rows_of(test):
                refused[(t, name)] = reason
    rps = {}
    with open(raw) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (int(r["pipeline"]), r["test"], r["target"])
            rps.setdefault(key, {})[r["round"]] = float(r["rps"])
    order = [name for t in tests.split(",") for name in rows_of(t)]

    def median_of(p, test, t):
        return med(rps.get((p, test, t), {}).values())

    def of_medians(p, test, a, b):
        return ratio(median_of(p, test, a), median_of(p, test, b))

    def paired(p, test, a, b):
        ra, rb = rps.get((p, test, a), {}), rps.get((p, test, b), {})
        return med([ra[k] / rb[k] for k in ra if rb.get(k)])

    def cell(p, test, t):
        return "n/a" if (t, test) in refused else num(median_of(p, test, t))

    def ratio_cell(p, test, a, b, how):
        if (a, test) in refused or (b, test) in refused:
            return "n/a"
        return r2(how(p, test, a, b))

    print(f"Requests per second, median of {rounds_text(rounds)} (`-c 50 -r 100000`), and the "
          "ratios of those medians. n/a: the target refused the test's command; -: no result.\n")
    for p in (1, 16):
        head = ["test"] + targets + [f"{a}/{b}" for a, b in pairs]
        lines = [[test] + [cell(p, test, t) for t in targets] +
                 [ratio_cell(p, test, a, b, of_medians) for a, b in pairs] for test in order]
        print(f"### -P {p}\n")
        print(table(head, lines))
        print()
    if pairs and int(rounds) > 1:
        print("Paired ratios: the median over rounds of the ratio of the two targets' rates in "
              "the same round (the machine's speed drifts from round to round; a ratio within a "
              "round cancels that):\n")
        head = ["-P", "test"] + [f"{a}/{b}" for a, b in pairs]
        lines = [[str(p), test] + [ratio_cell(p, test, a, b, paired) for a, b in pairs]
                 for p in (1, 16) for test in order]
        print(table(head, lines, ["r", "l"] + ["r"] * len(pairs)))
        print()
    if refused:
        print("Refused (reported as n/a):\n")
        for (t, test), reason in sorted(refused.items()):
            print(f"- {t}, {test}: `{reason}`")
        print()


def mixed_tables(report, targets, pairs):
    """Key figures of a mixed (or read, or write) run of strata bench."""
    s = report["settings"]
    by = {t["name"]: t for t in report["targets"]}
    ops = sorted({op for t in report["targets"] for op in t["ops"]})
    print("### Key figures (from the JSON report)\n")
    print(f"{s['workload']}, keys {s['keys']} ({s['key_dist']}), {s['clients']} clients, "
          f"pipeline {s['pipeline']}, {s['length']} per target and round, "
          f"{rounds_text(s['rounds'])}. req/s: median of the rounds; latencies over every "
          "reply of every round.\n")
    head = ["target", "op", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "hit %", "errors"]
    lines = []
    for t in targets:
        for op in ops:
            o = by.get(t, {}).get("ops", {}).get(op)
            if o is None:
                lines.append([t, op.upper()] + ["-"] * 6)
                continue
            n = o["hits"] + o["misses"]
            lines.append([t, op.upper(), num(o["per_sec"]), num(o["p50_us"], "{:,.1f}"),
                          num(o["p99_us"], "{:,.1f}"), num(o["p999_us"], "{:,.1f}"),
                          num(100 * o["hits"] / n, "{:.1f}") if op == "get" and n else "-",
                          str(o["errors"])])
    print(table(head, lines, ["l", "l"] + ["r"] * 6))
    print()

    def rate(t, rnd=None):
        """All requests per second of t: in round rnd, or the median of the rounds."""
        t = by.get(t)
        if t is None:
            return None
        if rnd is None:
            return t["per_sec"]
        return next((r["per_sec"] for r in t["rounds"] if r["round"] == rnd), None)

    def paired(a, b):
        return med([ratio(rate(a, r["round"]), rate(b, r["round"]))
                    for r in by.get(a, {}).get("rounds", [])])

    def latency(t, op, q):
        return by.get(t, {}).get("ops", {}).get(op, {}).get(q)

    if pairs:
        head = ["ratio", "req/s", "paired"] + [f"{op.upper()} {q}" for op in ops
                                               for q in ("p50", "p99")]
        lines = [[f"{a}/{b}", r2(ratio(rate(a), rate(b))), r2(paired(a, b))] +
                 [r2(ratio(latency(a, op, q + "_us"), latency(b, op, q + "_us")))
                  for op in ops for q in ("p50", "p99")] for a, b in pairs]
        print("Ratios: req/s of all requests (GET and SET share the connections, so their "
              "rates move together), of the medians and paired (the median of the per-round "
              "ratios); latency percentiles (lower is faster):\n")
        print(table(head, lines))
        print()
    for t in report["targets"]:
        for kind, count in t.get("errors", {}).items():
            example = t.get("error_examples", {}).get(kind, "")
            print(f"- {t['name']}: {count} errors {kind} (first: `{example}`)")


def router_tables(report, targets, pairs):
    """Key figures of a router run of strata bench."""
    s = report["settings"]
    rt = report["router"]
    cached = dict((name, f) for name, f in rt["cached"])
    speedup = dict((name, x) for name, x in rt["speedup"])
    print("### Key figures (from the JSON report)\n")
    print(f"{s['length']} per target and round, {rounds_text(s['rounds'])}, {s['clients']} "
          f"router workers, time scale {s['time_scale']} asked, {s['queries']} queries (Zipf "
          f"{s['zipf']}) over {s['models']} models; costs of a miss: {s['costs_ms']} ms. "
          "Hit rates are the GETs answered from the cache; speed-up = no-cache average "
          "response / the target's.\n")
    head = ["target", "avg ms", "p50 ms", "p99 ms", "queries/s", "route %", "result %",
            "overall %", "speed-up", "scale", "errors"]
    lines = []
    for name, f in [(t, cached.get(t)) for t in targets] + [("no cache", rt["no_cache"])]:
        if f is None:
            lines.append([name] + ["-"] * 10)
            continue

        def pct(layer):
            return num(100 * f["hit_rate"].get(layer, 0), "{:.1f}")

        lines.append([name, num(f["avg_ms"], "{:.2f}"), num(f["p50_ms"], "{:.2f}"),
                      num(f["p99_ms"], "{:.2f}"), num(f["throughput"], "{:,.1f}"),
                      pct("route"), pct("result"), num(100 * f["overall_hit_rate"], "{:.1f}"),
                      num(speedup.get(name), "{:.2f}x"), num(f["time_scale_reached"], "{:.1f}"),
                      str(sum(f["errors"].values()))])
    print(table(head, lines))
    print()
    lines = []
    for a, b in pairs:
        fa, fb = cached.get(a), cached.get(b)
        if fa and fb:
            lines.append([f"{a}/{b}", r2(ratio(fa["avg_ms"], fb["avg_ms"])),
                          r2(ratio(fa["p99_ms"], fb["p99_ms"])),
                          r2(ratio(fa["throughput"], fb["throughput"]))])
    if lines:
        print("Ratios (response times: lower is faster; queries/s: higher is faster):\n")
        print(table(["ratio", "avg response", "p99", "queries/s"], lines))
        print()
    short = [n for n, f in cached.items()
             if f["time_scale_reached"] < 0.95 * float(s["time_scale"])]
    if short:
        print(f"Below the time scale asked ({', '.join(short)}): their TTLs ran out sooner in "
              "simulated time than they should, so their hit rates are pessimistic.\n")
    for name, f in list(cached.items()) + [("no cache", rt["no_cache"])]:
        for kind, count in f.get("errors", {}).items():
            print(f"- {name}: {count} errors {kind}")


def tables(args):
    targets = args.targets.split()
    pairs = [(a, b) for a, b in PAIRS if a in targets and b in targets]
    if args.section == "redis-benchmark":
        redis_benchmark_tables(args.raw, args.refused, targets, pairs, args.rounds, args.tests)
    elif args.section == "mixed":
        report = load(args.json)
        if report is not None:
            mixed_tables(report, targets, pairs)
    elif args.section == "router":
        report = load(args.json)
        if report is not None and report.get("router"):
            router_tables(report, targets, pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("port", type=int)
    p.add_argument("tests", nargs="+")
    t = sub.add_parser("tables")
    t.add_argument("section", choices=["redis-benchmark", "mixed", "router"])
    t.add_argument("--targets", required=True, help="target names, space-separated, in order")
    t.add_argument("--raw", help="redis-benchmark: the raw TSV (pipeline round target test rps)")
    t.add_argument("--refused", help="redis-benchmark: TSV of refused tests (target test reason)")
    t.add_argument("--rounds", default="1", help="redis-benchmark: rounds run")
    t.add_argument("--tests", default="set,get", help="redis-benchmark: the -t list")
    t.add_argument("--json", help="mixed, router: strata bench's JSON report")
    args = parser.parse_args()
    if args.command == "probe":
        probe(args.port, args.tests)
    else:
        tables(args)


if __name__ == "__main__":
    sys.exit(main())
