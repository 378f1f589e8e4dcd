#!/usr/bin/env python3
# scripts/clients/tracking.py - the redis-py client-side caching scenario of scripts/clients-check.sh.
#
# What an application does to try server-assisted client-side caching with redis-py: a client
# with `protocol=3, cache_config=CacheConfig()` (redis-py turns CLIENT TRACKING on and keeps
# the replies of reads in its own memory, dropped on the server's `>invalidate` pushes), one
# key read twice, then the key changed in each way an application meets: a write by another
# client through the same endpoint, a write made on the Redis node that holds the key (found
# with EXISTS on every node given by --nodes: for a plain redis-server that is itself), a write
# by the caching client itself, and a key that expires (SET PX 1000). After each change the
# scenario waits for the invalidation (PING on the caching connection reads the pending pushes;
# the cache entry must go), then reads again: the new value must come back, read from the
# server, and the read after that from the cache again. Then 200 times: the caching client
# writes the key and reads it at once, which must return what it wrote (read your own write:
# Redis sends the invalidation with the write's reply).
#
# "Served from the cache" is what the nodes saw: the GETs they ran (INFO commandstats,
# cmdstat_get, summed over --nodes) around the reads, beside whether redis-py holds the entry.
#
# The recording (see scenario.py) is the list of [step, result] that compare.py compares, plus
# "stale": every read that returned an older value than the last write after its invalidation
# had come (or never came), and "timings": how long after the write's reply the invalidation
# reached the client, in ms (not compared: shown beside each other).
#
# redis-py refuses client-side caching unless the server's HELLO says "redis" at version 7.4 or
# later (CacheProxyConnection.MIN_ALLOWED_VERSION, "to maximize compatibility with all Redis
# products": a policy, not a protocol need, CLIENT TRACKING and RESP3 pushes are Redis 6.0's).
# The nodes here are Redis 7.0 and strata says 7.0.0, so both would be refused: the first step
# records that refusal as a user meets it, then the scenario lowers the gate to 7.0.0 and goes on.
#
# Usage: tracking.py --port PORT --nodes PORT[,PORT...] --out FILE [--timeout SECONDS]
#                    [--tls-ca FILE]
#        tracking.py --supports-csc     (prints "yes", or "no: why not" for the installed redis-py)
# --nodes are plain (not TLS) ports of the redis-servers that hold the data. Works with redis-py
# 5.1 and later (cache_config came with 5.1).

import argparse
import json
import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scenario import Recorder, error_of

KEY = "csc:key"
EXPIRING = "csc:expiring"
# Long enough for the two reads before it to come first on a loaded machine.
EXPIRE_MS = 1000
OWN_WRITES = 200


def supports_csc():
    try:
        from redis.cache import CacheConfig  # noqa: F401
    except ImportError:
        return f"no: redis-py {redis.__version__} has no client-side cache (cache_config came with 5.1)"
    return "yes"


def main():
    if sys.argv[1:] == ["--supports-csc"]:
        print(supports_csc())
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--nodes", required=True, help="comma-separated plain ports of the data nodes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--tls-ca", help="connect over TLS, trusting this CA (PEM)")
    a = ap.parse_args()
    if supports_csc() != "yes":
        print(f"tracking.py: {supports_csc()}", file=sys.stderr)
        return 2
    from redis.cache import CacheConfig
    from redis.connection import CacheProxyConnection

    tls = {}
    if a.tls_ca:
        tls = {"ssl": True, "ssl_ca_certs": a.tls_ca, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
    T = a.timeout

    def client(port=a.port, tls=tls, **kw):
        # No retries: a retry would hide a dropped connection.
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            decode_responses=True,
            socket_timeout=T,
            socket_connect_timeout=T,
            retry=Retry(NoBackoff(), 0),
            **tls,
            **kw,
        )

    def caching_client():
        return client(protocol=3, cache_config=CacheConfig())

    nodes = [client(port=int(p), tls={}) for p in a.nodes.split(",")]
    writer = client()  # another application connection, no cache
    s = Recorder(a.out)
    stale = []
    timings = {}

    def node_gets():
        return sum(n.info("commandstats").get("cmdstat_get", {}).get("calls", 0) for n in nodes)

    c = None

    def cached(key):
        # A finished entry of redis-py's cache for a read of `key`.
        entries = list(c.get_cache().collection.values())
        return any(key in e.cache_key.redis_keys and e.status.name == "VALID" for e in entries)

    def reads(key, n):
        g0 = node_gets()
        values = [c.get(key) for _ in range(n)]
        return {
            "values": values,
            "in the client's cache": cached(key),
            "GETs the nodes ran": node_gets() - g0,
        }

    def wait_invalidated(key, label, since, budget):
        # redis-py reads the pushes waiting on the caching connection before each command it
        # sends there: a PING is how to let it.
        deadline = time.monotonic() + budget
        while True:
            c.ping()
            if not cached(key):
                break
            if time.monotonic() >= deadline:
                timings[label] = None
                return False
            time.sleep(0.0002)
        timings[label] = round((time.monotonic() - since) * 1000, 2)
        return True

    def read_after(label, key, expected):
        r = reads(key, 1)
        if r["values"][0] != expected:
            stale.append(f"{label}: GET returned {r['values'][0]!r}, the last write left {expected!r}")
        return r

    def change(label, write, key, expected, budget=T):
        done = {}

        def do_write():
            result = write()
            done["at"] = time.monotonic()
            return result

        s(f"{label}: write", do_write)
        if "at" not in done:
            return  # the write failed: recorded; the reads below would say nothing new
        s(f"{label}: invalidation received", lambda: wait_invalidated(key, label, done["at"], budget))
        s(f"{label}: next GET (from the server)", lambda: read_after(label, key, expected))
        s(f"{label}: GET again (from the cache)", lambda: read_after(f"{label}, again", key, expected))

    # --- redis-py's own gate, as an application meets it, then lowered --------------------------
    def gate():
        probe = caching_client()
        try:
            return probe.ping()
        finally:
            probe.close()

    s("redis-py's version gate for client-side caching", gate)
    CacheProxyConnection.MIN_ALLOWED_VERSION = "7.0.0"

    s("setup: DEL the scenario's keys", lambda: writer.delete(KEY, EXPIRING) >= 0)

    def connect():
        nonlocal c
        c = caching_client()
        return c.ping()

    s("connect with cache_config (RESP3)", connect)
    s("CLIENT TRACKINGINFO", lambda: c.execute_command("CLIENT", "TRACKINGINFO"))

    # --- one key read twice: the second read from memory ---------------------------------------
    s("SET by another client", lambda: writer.set(KEY, "v1"))
    s("GET twice", lambda: reads(KEY, 2))

    # --- the key changes: each time the cached value must go --------------------------------------
    change("write by another client through the same endpoint", lambda: writer.set(KEY, "v2"), KEY, "v2")

    holders = []

    def find_holders():
        holders[:] = [n for n in nodes if n.exists(KEY)]
        return len(holders)

    s("nodes holding the key (EXISTS on each)", find_holders)
    change(
        "write on the node holding the key",
        lambda: [n.set(KEY, "v3") for n in holders] or None,
        KEY,
        "v3",
    )
    change("write by the caching client itself", lambda: c.set(KEY, "v4"), KEY, "v4")

    def own_writes_read_at_once(n=OWN_WRITES):
        # Read your own write: the GET right after the client's own SET must not come from the
        # cache. Redis writes the invalidation of a client's own write together with the
        # write's reply, so a client that reads its socket before serving from memory (redis-py
        # does) never sees its older value. (Right after another client's write, a GET from
        # the cache may be older on Redis too: that push and the other client's reply travel
        # on different connections. Not counted.)
        older = 0
        for i in range(n):
            c.get(KEY)  # cached (filled by the previous round's GET)
            c.set(KEY, f"own{i}")
            if c.get(KEY) != f"own{i}":
                older += 1
        if older:
            stale.append(
                f"write by the caching client itself, then GET at once: {older} of {n} GETs "
                "returned the value from before the client's own write"
            )
        return {"GETs": n, "older than the client's own write": older}

    s(f"write by the caching client itself, then GET at once (x{OWN_WRITES})", own_writes_read_at_once)

    # --- a key that expires ---------------------------------------------------------------------
    expires = {}

    def set_expiring():
        result = writer.set(EXPIRING, "soon", px=EXPIRE_MS)
        expires["at"] = time.monotonic() + EXPIRE_MS / 1000
        return result

    s(f"SET PX {EXPIRE_MS} by another client", set_expiring)
    s("GET twice before it expires", lambda: reads(EXPIRING, 2))
    # The budget counts from now, the timing from when the key was due to expire. Twice the
    # step timeout: a node finds an expired key by sampling (10 times a second, and not at all
    # while its table of keys with a TTL is mostly empty slots, until that table shrinks).
    s(
        "expiry: invalidation received",
        lambda: wait_invalidated(EXPIRING, "expiry (after the TTL)", expires["at"], 2 * T + EXPIRE_MS / 1000),
    )
    s("expiry: next GET", lambda: read_after("expiry", EXPIRING, None))

    with open(a.out) as f:
        recording = json.load(f)
    recording["stale"] = stale
    recording["timings"] = timings
    with open(a.out, "w") as f:
        json.dump(recording, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
