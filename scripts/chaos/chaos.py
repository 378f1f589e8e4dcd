#!/usr/bin/env python3
"""Helpers of scripts/chaos.sh (Python 3 standard library only). Subcommands:

  writer   the checking writer: SETs unique keys (and, CHAOS_REWRITE_PCT of the time, a new
           value for a key it wrote before) through strata at a steady rate, one at a time,
           and logs every outcome with its time: `A <t> <key> <value> <ms>` for an
           acknowledged write (+OK; ms: its latency), `E <t> <key> <value> <text>` for an error
           reply, a timeout or a lost connection (the write may or may not have landed). Runs
           until the stop file exists.
  verify   reads every acknowledged key back: first its copies on each node directly (how
           many nodes hold the acknowledged value), then through strata (the layer's quorum
           read), and writes a JSON summary. A key is lost when strata answers anything but
           its last acknowledged value (or the value of a write tried after it that failed:
           a failed write may have landed).
  monitor  every 100 ms: the nodes' states from STRATA NODES (`N <t> <id> <state>` when one
           changes, `gone` when a node leaves the listing) and every 250 ms strata's VmRSS
           (`R <t> <kB>`), until the stop file exists.
  idle     opens N client connections, each sending one PING and reading its PONG, prints
           `ready <seconds>`, and holds them until its standard input closes.
  report   the table of scripts/chaos.sh, from the files the other subcommands wrote; exit 1
           when an acknowledged write was lost.

Every time is wall-clock seconds (time.time()), as `date +%s.%N` prints it.
"""

import argparse
import json
import os
import random
import selectors
import socket
import sys
import time

# ---------------------------------------------------------------------------------------------
# A minimal RESP2 client: requests as multibulk, replies parsed into Python values
# (errors as RespError values, not raised, so a pipeline's replies stay in order).


class RespError(str):
    """An error reply (its text)."""


class Resp:
    def __init__(self, port, timeout=5.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = b"%d" % a
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by strata")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data = bytes(self.buf[:n])
            del self.buf[: n + 2]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("unexpected reply line %r" % line[:80])

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read()

    def pipeline(self, commands, batch=500):
        """Replies of `commands` (tuples of arguments), sent `batch` at a time."""
        replies = []
        for i in range(0, len(commands), batch):
            part = commands[i : i + batch]
            self.sock.sendall(b"".join(self.encode(*c) for c in part))
            replies.extend(self.read() for _ in part)
        return replies


def now():
    return time.time()


# ---------------------------------------------------------------------------------------------
# writer


def writer(a):
    rng = random.Random(a.seed)
    log = open(a.log, "a", buffering=1)
    interval = 1.0 / a.rate
    acked = []  # keys acknowledged at least once (candidates for a rewrite)
    seq = 0
    conn = None
    next_at = now()
    while not os.path.exists(a.stop):
        if conn is None:
            try:
                conn = Resp(a.port, timeout=a.timeout)
            except OSError as e:
                log.write("E %.6f - - connect: %s\n" % (now(), str(e).replace("\n", " ")))
                time.sleep(0.1)
                continue
        seq += 1
        rewrite = bool(acked) and rng.randrange(100) < a.rewrite_pct
        key = rng.choice(acked) if rewrite else "%s%d" % (a.prefix, seq)
        value = "v%d-%08x" % (seq, rng.getrandbits(32))
        sent = now()
        try:
            reply = conn.call("SET", key, value)
        except (OSError, ConnectionError, ValueError) as e:
            text = "%s: %s" % (type(e).__name__, e)
            log.write("E %.6f %s %s %s\n" % (now(), key, value, text.replace("\n", " ")))
            conn.close()
            conn = None
            continue
        if reply == "OK":
            t = now()
            log.write("A %.6f %s %s %.1f\n" % (t, key, value, (t - sent) * 1000))
            if not rewrite:
                acked.append(key)
        else:
            log.write("E %.6f %s %s %s\n" % (now(), key, value, str(reply).replace("\n", " ")))
        next_at += interval
        pause = next_at - now()
        if pause > 0:
            time.sleep(pause)
        elif pause < -1.0:
            next_at = now()  # fell behind (strata was slow): do not burst to catch up


def read_writer_log(path):
    """Per key, its outcomes in order: (time, acknowledged, value)."""
    keys = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 4)
            if len(parts) < 4 or parts[2] == "-":
                continue
            if parts[0] == "A":
                keys.setdefault(parts[2], []).append((float(parts[1]), True, parts[3]))
            elif parts[0] == "E":
                keys.setdefault(parts[2], []).append((float(parts[1]), False, parts[3]))
    return keys


def accepted_values(outcomes):
    """The last acknowledged value and the values of the writes tried after it."""
    last = max((i for i, o in enumerate(outcomes) if o[1]), default=None)
    if last is None:
        return None, set()
    return outcomes[last][2], {o[2] for o in outcomes[last:]}


# ---------------------------------------------------------------------------------------------
# verify


def verify(a):
    started = now()
    history = read_writer_log(a.log)
    expected = {}
    for key, outcomes in history.items():
        value, accepted = accepted_values(outcomes)
        if value is not None:
            expected[key] = accepted
    keys = sorted(expected)

    # Copies first: the quorum reads below repair what they find different.
    copies = {}
    for port in a.nodes:
        try:
            c = Resp(port, timeout=30)
            replies = c.pipeline([("GET", k) for k in keys])
            c.close()
        except (OSError, ConnectionError):
            continue  # a node that is down holds no copy we can count
        for k, r in zip(keys, replies):
            if isinstance(r, bytes) and r.decode() in expected[k]:
                copies[k] = copies.get(k, 0) + 1
    histogram = {}
    for k in keys:
        n = copies.get(k, 0)
        histogram[n] = histogram.get(n, 0) + 1

    def read_back(ks):
        c = Resp(a.port, timeout=30)
        replies = c.pipeline([("GET", k) for k in ks])
        c.close()
        return replies

    unreadable, wrong, missing, examples, first_error = [], [], [], [], None
    todo = keys
    for attempt in range(a.retries + 1):
        replies = read_back(todo)
        # Writes made while reading: a key rewritten meanwhile may show its newer value.
        later = read_writer_log(a.log)
        unreadable = []
        for k, r in zip(todo, replies):
            if isinstance(r, RespError):
                unreadable.append(k)
                first_error = first_error or str(r)
                continue
            got = r.decode() if isinstance(r, bytes) else None
            if got in expected[k]:
                continue
            if got is not None and got in {o[2] for o in later.get(k, [])}:
                continue
            (missing if got is None else wrong).append(k)
            if len(examples) < 5:
                examples.append(
                    {"key": k, "got": got, "expected": sorted(expected[k]), "copies": copies.get(k, 0)}
                )
        if not unreadable:
            break
        todo = unreadable
        time.sleep(1)

    result = {
        "time": now(),
        "seconds": round(now() - started, 2),
        "keys": len(keys),
        "lost": len(missing) + len(wrong) + len(unreadable),
        "missing": len(missing),
        "wrong": len(wrong),
        "unreadable": len(unreadable),
        "first_read_error": first_error,
        "copies": {str(k): v for k, v in sorted(histogram.items())},
        "under_replicated": sum(v for n, v in histogram.items() if n < a.replication),
        "examples": examples,
    }
    with open(a.out, "w") as f:
        json.dump(result, f)
    print(
        "verify: %d keys, %d lost (%d missing, %d other value, %d unreadable), %d with fewer than %d copies, %.1fs"
        % (
            result["keys"],
            result["lost"],
            result["missing"],
            result["wrong"],
            result["unreadable"],
            result["under_replicated"],
            a.replication,
            result["seconds"],
        ),
        file=sys.stderr,
    )
    for e in examples:
        print("verify: lost %s" % json.dumps(e), file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# monitor


def node_states(conn):
    states = {}
    for entry in conn.call("STRATA", "NODES") or []:
        fields = dict(zip(entry[0::2], entry[1::2]))
        node_id = fields.get(b"id", b"?").decode()
        states[node_id] = fields.get(b"state", b"?").decode()
    return states


def monitor(a):
    log = open(a.log, "a", buffering=1)
    last, conn, next_rss = {}, None, 0.0
    while not os.path.exists(a.stop):
        t = now()
        if t >= next_rss:
            next_rss = t + 0.25
            try:
                with open("/proc/%d/status" % a.pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            log.write("R %.6f %s\n" % (t, line.split()[1]))
            except OSError:
                pass
        try:
            if conn is None:
                conn = Resp(a.port, timeout=2)
            states = node_states(conn)
        except (OSError, ConnectionError, ValueError, TypeError, AttributeError):
            if conn is not None:
                conn.close()
            conn, states = None, None
        if states is not None:
            for node_id, state in states.items():
                if last.get(node_id) != state:
                    log.write("N %.6f %s %s\n" % (t, node_id, state))
            for node_id in set(last) - set(states):
                if last[node_id] != "gone":
                    log.write("N %.6f %s gone\n" % (t, node_id))
                    states[node_id] = "gone"
            last = states
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# idle


def idle(a):
    started = now()
    socks = []
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + a.timeout
    for i in range(a.clients):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.setblocking(False)
        s.send(b"*1\r\n$4\r\nPING\r\n")
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        # A pause every 500 connects: a burst of thousands overflows the listen backlog.
        if i % 500 == 499:
            time.sleep(0.01)
    waiting = len(socks)
    while waiting:
        if time.monotonic() > deadline:
            print("timed out with %d PONGs missing" % waiting, flush=True)
            sys.exit(1)
        for key, _ in sel.select(timeout=1):
            reply = key.fileobj.recv(64)
            if reply != b"+PONG\r\n":
                print("unexpected reply %r" % reply, flush=True)
                sys.exit(1)
            sel.unregister(key.fileobj)
            waiting -= 1
    print("ready %.2f" % (now() - started), flush=True)
    sys.stdin.read()


# ---------------------------------------------------------------------------------------------
# report


def read_lines(path, kind):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 4)
                if parts and parts[0] == kind:
                    out.append(parts[1:])
    except OSError:
        pass
    return out


def bench_summary(path):
    """(rounds, rounds with an error, first error text) of a bench log."""
    rounds = errors = 0
    first = None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return 0, 0, None
    for i, line in enumerate(lines):
        if line.startswith("round "):
            rounds += 1
            if not line.endswith(" rc=0"):
                errors += 1
        if first is None and ("replied with error" in line or line.startswith("Error")):
            text = line
            if "replied with error" in line and i + 1 < len(lines):
                text = lines[i + 1]
            first = text.strip()
    return rounds, errors, first


def fmt_s(x):
    return "-" if x is None else "%.1fs" % x


def report(a):
    events = {}
    order = []
    for t, scenario, kind, *rest in read_lines(a.events, "V"):
        if scenario not in events:
            events[scenario] = {}
            order.append(scenario)
        events[scenario].setdefault(kind, float(t))
        if rest:
            events[scenario].setdefault(kind + "_detail", rest[0])
    acks = [(float(t), k) for t, k, *_ in read_lines(a.writer_log, "A")]
    latencies = [(float(t), float(rest[-1])) for t, *rest in read_lines(a.writer_log, "A") if len(rest) == 3]
    errs = [(float(t), rest) for t, *rest in read_lines(a.writer_log, "E")]
    rss = [(float(t), int(kb)) for t, kb in read_lines(a.monitor_log, "R")]
    states = [(float(t), n, s) for t, n, s in read_lines(a.monitor_log, "N")]

    def figures(scenario):
        text = events.get(scenario, {}).get("figures_detail", "")
        return {k: int(v) for k, _, v in (f.partition(":") for f in text.split(",") if f)}

    rows = []
    notes = []
    exit_code = 0
    previous = figures("setup")
    for s in order:
        if s in ("setup", "final"):
            continue
        ev = events[s]
        start, end = ev.get("start"), ev.get("end", now())
        fault = ev.get("fault", start)
        healed = ev.get("healed", end)
        w_acks = sum(1 for t, _ in acks if start <= t <= end)
        slowest = max((ms for t, ms in latencies if start <= t <= end), default=None)
        w_errs = [(t, r) for t, r in errs if start <= t <= end]
        first_err = None
        if w_errs:
            r = w_errs[0][1]
            first_err = r[2] if len(r) > 2 else " ".join(r)
        # Writes succeed again: the first acknowledgement after the last error of the scenario.
        writes_ok = None
        if w_errs:
            last_err = w_errs[-1][0]
            after = [t for t, _ in acks if t > last_err]
            writes_ok = (after[0] - fault) if after else None
        before = [kb for t, kb in rss if t <= start]
        during = [kb for t, kb in rss if fault <= t <= max(healed, ev.get("recovered", healed)) + 0.5]
        after_rss = [kb for t, kb in rss if t <= end]
        rss_txt = "%s/%s/%s" % (
            before[-1] // 1024 if before else "?",
            max(during) // 1024 if during else "?",
            after_rss[-1] // 1024 if after_rss else "?",
        )
        node = ev.get("fault_detail")
        node_txt = "-"
        if node and node.startswith("node"):
            down = next((t for t, n, st in states if n == node and st in ("down", "gone") and t >= fault), None)
            up = next((t for t, n, st in states if n == node and st == "up" and t >= max(down or fault, healed)), None)
            node_txt = "%s/%s" % (fmt_s(down - fault), fmt_s(up - fault)) if down else "never down"
        rounds, b_errs, b_first = bench_summary(os.path.join(a.dir, "bench-%s.log" % s))
        v = {}
        try:
            with open(os.path.join(a.dir, "verify-%s.json" % s)) as f:
                v = json.load(f)
        except (OSError, ValueError):
            notes.append("%s: no verification result" % s)
            exit_code = 1
        if v.get("lost", 0):
            exit_code = 1
        recovered = ev.get("recovered")
        rec_txt = fmt_s(recovered - fault) if recovered else "-"
        rows.append(
            [
                s,
                str(w_acks),
                str(len(w_errs)),
                "%d/%d" % (b_errs, rounds),
                "%s/%s" % (v.get("lost", "?"), v.get("keys", "?")),
                str(v.get("under_replicated", "?")),
                rss_txt,
                node_txt,
                rec_txt,
                fmt_s(writes_ok) if w_errs else "no error",
                "-" if slowest is None else "%.0fms" % slowest,
            ]
        )
        if first_err:
            notes.append("%s: writer's first error: %s" % (s, first_err))
        if b_first:
            notes.append("%s: redis-benchmark's first error: %s" % (s, b_first))
        current = figures(s)
        if current:
            delta = {k: v - previous.get(k, 0) for k, v in current.items()}
            notes.append(
                "%s: hints stored %d, replayed %d, dropped %d; read repairs %d; write failures %d"
                % (
                    s,
                    delta.get("hints_stored", 0),
                    delta.get("hints_replayed", 0),
                    delta.get("hints_dropped", 0),
                    delta.get("repairs", 0),
                    delta.get("write_failures", 0),
                )
            )
            previous = current
        if ev.get("note_detail"):
            notes.append("%s: %s" % (s, ev["note_detail"].replace("_", " ")))
        for e in v.get("examples", []):
            notes.append("%s: lost %s" % (s, json.dumps(e)))
    header = [
        "scenario",
        "acked",
        "w.err",
        "bench err/rounds",
        "lost/keys",
        "<3 copies",
        "RSS MB b/d/a",
        "node down/up",
        "recovered",
        "writes ok",
        "slowest write",
    ]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))
    final = {}
    try:
        with open(os.path.join(a.dir, "verify-final.json")) as f:
            final = json.load(f)
    except (OSError, ValueError):
        notes.append("final: no verification result")
        exit_code = 1
    if final:
        print(
            "final: %d acknowledged keys read back with quorum reads after the run: %d lost (%d missing, %d other value, %d unreadable); copies per key %s"
            % (
                final["keys"],
                final["lost"],
                final["missing"],
                final["wrong"],
                final["unreadable"],
                final["copies"],
            )
        )
        if final["lost"]:
            exit_code = 1
            for e in final.get("examples", []):
                notes.append("final: lost %s" % json.dumps(e))
    print("writer: %d writes acknowledged, %d failed in all" % (len(acks), len(errs)))
    for n in notes:
        print("  " + n)
    print("RESULT: %s" % ("PASS" if exit_code == 0 else "FAIL (an acknowledged write was lost or not verified)"))
    return exit_code


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--log", required=True)
    w.add_argument("--stop", required=True)
    w.add_argument("--rate", type=float, default=200)
    w.add_argument("--rewrite-pct", type=int, default=10)
    w.add_argument("--prefix", default="chaos:")
    w.add_argument("--timeout", type=float, default=5)
    w.add_argument("--seed", type=int, default=None)
    v = sub.add_parser("verify")
    v.add_argument("--port", type=int, required=True)
    v.add_argument("--nodes", type=int, nargs="+", required=True)
    v.add_argument("--log", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--replication", type=int, default=3)
    v.add_argument("--retries", type=int, default=3)
    m = sub.add_parser("monitor")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--pid", type=int, required=True)
    m.add_argument("--log", required=True)
    m.add_argument("--stop", required=True)
    i = sub.add_parser("idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--clients", type=int, required=True)
    i.add_argument("--timeout", type=float, default=120)
    r = sub.add_parser("report")
    r.add_argument("--dir", required=True)
    r.add_argument("--events", required=True)
    r.add_argument("--writer-log", required=True)
    r.add_argument("--monitor-log", required=True)
    a = p.parse_args()
    if a.cmd == "writer":
        writer(a)
    elif a.cmd == "verify":
        verify(a)
    elif a.cmd == "monitor":
        monitor(a)
    elif a.cmd == "idle":
        idle(a)
    elif a.cmd == "report":
        sys.exit(report(a))


if __name__ == "__main__":
    main()
