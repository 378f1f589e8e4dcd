#!/usr/bin/env python3
# scripts/clients/scenario.py - the redis-py scenario of scripts/clients-check.sh.
#
# Connects to one server (a plain redis-server or strata) the way an application does, runs the
# same sequence of steps against it (handshake, every data type, pipelines, transactions, pub/sub,
# Lua, SCAN, keyspace commands) and writes what every step returned to a JSON file, as a list of
# [step, result]: bytes become strings, tuples lists, errors {"error": message}, a step that
# waited longer than --timeout {"error": "timeout"}. scripts/clients/compare.py then compares the
# recordings of the two servers. Values that legitimately differ between servers (client ids,
# versions, addresses, times, random picks) are left out or reduced to something stable; each
# such place says so.
#
# Usage: scenario.py --port PORT --protocol 2|3 --out FILE [--timeout SECONDS] [--tls-ca FILE]
# Works with redis-py 5.x and later. The server's database is flushed (FLUSHALL) at the start.
# With --tls-ca, every connection is TLS (ssl=True), the server's certificate checked against
# that CA and against the address, 127.0.0.1 (ssl_check_hostname: the certificate's IP entry).

import argparse
import json
import socket
import sys
import warnings

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# SETEX / PSETEX / GETSET are deprecated in redis-py but still what many applications call.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def jsonable(v):
    """A JSON-able copy of a reply as redis-py returns it."""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="backslashreplace")
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (set, frozenset)):
        # JSON has no sets; the members in a stable order.
        return sorted((jsonable(x) for x in v), key=json.dumps)
    if isinstance(v, dict):
        return {k if isinstance(k, str) else json.dumps(jsonable(k)): jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and (v != v or abs(v) == float("inf")):
        return repr(v)  # JSON has no NaN or infinities
    if isinstance(v, Exception):
        return error_of(v)
    return v


def error_of(e):
    if isinstance(e, (redis.TimeoutError, socket.timeout)):
        return {"error": "timeout"}
    if isinstance(e, redis.ResponseError) and type(e).__name__ in ("ResponseError",):
        return {"error": str(e)}
    return {"error": f"{type(e).__name__}: {e}"}


def unordered(v):
    """Replies whose order Redis does not define (sets, random picks): sorted, shape kept."""
    return sorted(jsonable(v), key=json.dumps)


class Recorder:
    """Runs the steps; the recording is written after every step, so a crash keeps the rest."""

    def __init__(self, out):
        self.out = out
        self.steps = []

    def __call__(self, name, fn):
        try:
            value = jsonable(fn())
        except Exception as e:  # every failure is a result to compare
            value = error_of(e)
        self.steps.append([name, value])
        with open(self.out, "w") as f:
            json.dump({"steps": self.steps}, f, indent=1)
        return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", type=int, choices=(2, 3), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--tls-ca", help="connect over TLS, trusting this CA (PEM)")
    a = ap.parse_args()
    # The same settings for the sync and the asyncio client; nothing at all without --tls-ca, so
    # that the plain runs are what they always were.
    tls = {}
    if a.tls_ca:
        tls = {"ssl": True, "ssl_ca_certs": a.tls_ca, "ssl_cert_reqs": "required", "ssl_check_hostname": True}

    def client(**kw):
        # No retries: a retry would resend a failed pipeline and hide a dropped connection.
        return redis.Redis(
            host="127.0.0.1",
            port=a.port,
            protocol=a.protocol,
            socket_timeout=a.timeout,
            socket_connect_timeout=a.timeout,
            retry=Retry(NoBackoff(), 0),
            **tls,
            **kw,
        )

    r = client(decode_responses=True, client_name="clients-check")
    other = client(decode_responses=True)  # a second application connection
    raw = client()  # bytes in, bytes out
    s = Recorder(a.out)
    T = a.timeout

    # --- handshake: redis-py's own connect (HELLO 3 in RESP3, CLIENT SETNAME, CLIENT SETINFO) --
    s("connect: PING", r.ping)
    s("connect: CLIENT GETNAME", r.client_getname)

    def client_info():
        # id, addresses, fd, ages, buffer and memory figures differ between servers: left out.
        info = r.client_info()
        keep = ("name", "db", "sub", "psub", "multi", "flags", "cmd", "user", "resp")
        return {"fields": sorted(info), **{k: info.get(k) for k in keep}}

    s("connect: CLIENT INFO (stable fields)", client_info)

    def hello():
        # Same protocol as the connection (another would change how redis-py parses). `version`
        # (strata reports the command set it implements) and `id` differ by design: left out.
        reply = r.execute_command("HELLO", a.protocol)
        if isinstance(reply, list):
            reply = dict(zip(reply[::2], reply[1::2]))
        return {k: v for k, v in reply.items() if k not in ("version", "id")}

    s("connect: HELLO (without version, id)", hello)
    s("connect: SELECT 0", lambda: r.execute_command("SELECT", 0))
    s("connect: ECHO", lambda: r.echo("héllo"))
    s("FLUSHALL", r.flushall)

    # --- strings -------------------------------------------------------------------------------
    s("string SET", lambda: r.set("str:a", "hello"))
    s("string SET NX on existing", lambda: r.set("str:a", "x", nx=True))
    s("string SET XX GET", lambda: r.set("str:a", "world", xx=True, get=True))
    s("string GET", lambda: r.get("str:a"))
    s("string GET missing", lambda: r.get("str:nope"))
    s("string SET EX then KEEPTTL", lambda: [r.set("str:t", "1", ex=100), r.set("str:t", "2", keepttl=True)])
    # TTLs are compared as "within the expected range": a second may tick between two calls.
    s("string TTL kept (90..100)", lambda: 90 <= r.ttl("str:t") <= 100)
    s("string GETEX EX 50", lambda: r.getex("str:a", ex=50))
    s("string TTL after GETEX (40..50)", lambda: 40 <= r.ttl("str:a") <= 50)
    s("string GETEX PERSIST", lambda: r.getex("str:a", persist=True))
    s("string TTL after PERSIST", lambda: r.ttl("str:a"))
    s("string GETDEL", lambda: r.getdel("str:a"))
    s("string INCR INCRBY DECRBY", lambda: [r.incr("str:n"), r.incrby("str:n", 10), r.decrby("str:n", 3)])
    s("string INCRBYFLOAT", lambda: [r.incrbyfloat("str:f", 1.5), r.incrbyfloat("str:f", "2.25e2")])
    s("string INCR on a non-integer", lambda: [r.set("str:word", "abc"), r.incr("str:word")])
    s(
        "string APPEND STRLEN GETRANGE SETRANGE",
        lambda: [
            r.append("str:s", "Hello"),
            r.append("str:s", " World"),
            r.strlen("str:s"),
            r.getrange("str:s", 0, 4),
            r.setrange("str:s", 6, "Redis"),
            r.get("str:s"),
        ],
    )
    s("string MSET over nodes", lambda: r.mset({f"str:m{i}": i for i in range(10)}))
    s("string MGET over nodes", lambda: r.mget([f"str:m{i}" for i in range(10)] + ["str:none"]))
    # Read again and again: with a near cache (CLIENTS_CHECK_NEAR) these come from memory.
    s(
        "string GET and MGET, read again",
        lambda: [
            [r.get(f"str:m{i}") for i in range(10)] + [r.mget([f"str:m{i}" for i in range(10)])]
            for _ in range(5)
        ],
    )
    s(
        "string GET after SET, read again",
        lambda: [
            [r.set("str:m0", n), r.get("str:m0"), r.get("str:m0"), r.mget(["str:m0", "str:m1"])]
            for n in range(5)
        ],
    )
    s(
        "string MSETNX (hash tag)",
        lambda: [r.msetnx({"{str}x": 1, "{str}y": 2}), r.msetnx({"{str}x": 3, "{str}z": 4})],
    )
    s(
        "string SETEX PSETEX GETSET",
        lambda: [r.setex("str:e", 100, "v"), r.psetex("str:p", 100000, "w"), r.getset("str:e", "v2")],
    )
    s(
        "string binary value",
        lambda: [raw.set(b"str:bin", bytes(range(256))), raw.get(b"str:bin") == bytes(range(256))],
    )
    s("string SETNX", lambda: [r.setnx("str:nx", 1), r.setnx("str:nx", 2)])

    # --- hashes --------------------------------------------------------------------------------
    s("hash HSET mapping", lambda: r.hset("hash:h", mapping={"f1": "v1", "f2": "v2", "n": 5}))
    s("hash HGET HMGET", lambda: [r.hget("hash:h", "f1"), r.hmget("hash:h", ["f1", "zz", "f2"])])
    s("hash HGETALL", lambda: r.hgetall("hash:h"))
    s("hash HGETALL missing", lambda: r.hgetall("hash:none"))
    s("hash HINCRBY HINCRBYFLOAT", lambda: [r.hincrby("hash:h", "n", 2), r.hincrbyfloat("hash:h", "x", 0.5)])
    s("hash HKEYS HVALS HLEN", lambda: [r.hkeys("hash:h"), r.hvals("hash:h"), r.hlen("hash:h")])
    s(
        "hash HEXISTS HSETNX HSTRLEN",
        lambda: [r.hexists("hash:h", "f1"), r.hsetnx("hash:h", "f1", "no"), r.hstrlen("hash:h", "f2")],
    )
    s("hash HSCAN", lambda: r.hscan("hash:h", 0))
    # Random picks: a count of the whole hash returns every field once, in any order.
    s("hash HRANDFIELD count WITHVALUES", lambda: unordered(r.hrandfield("hash:h", 4, withvalues=True)))
    s("hash HRANDFIELD count", lambda: unordered(r.hrandfield("hash:h", 4)))
    s("hash HDEL", lambda: [r.hdel("hash:h", "f1", "nope"), r.hgetall("hash:h")])

    # --- lists ---------------------------------------------------------------------------------
    s("list RPUSH LPUSH", lambda: [r.rpush("list:l", "a", "b", "c", "d"), r.lpush("list:l", "z")])
    s("list LRANGE", lambda: r.lrange("list:l", 0, -1))
    s(
        "list LINDEX LINSERT LSET",
        lambda: [
            r.lindex("list:l", 1),
            r.linsert("list:l", "BEFORE", "c", "bb"),
            r.lset("list:l", 0, "zz"),
            r.lrange("list:l", 0, -1),
        ],
    )
    s(
        "list LPOS LREM LTRIM",
        lambda: [
            r.lpos("list:l", "c"),
            r.lrem("list:l", 0, "bb"),
            r.ltrim("list:l", 0, 3),
            r.lrange("list:l", 0, -1),
        ],
    )
    s("list LPOP count RPOP LLEN", lambda: [r.lpop("list:l", 2), r.rpop("list:l"), r.llen("list:l")])
    s(
        "list LMOVE (hash tag)",
        lambda: [
            r.rpush("{list}a", 1, 2, 3),
            r.lmove("{list}a", "{list}b", "LEFT", "RIGHT"),
            r.lrange("{list}b", 0, -1),
        ],
    )
    s("list LMPOP", lambda: r.lmpop(2, "{list}none", "{list}a", direction="LEFT", count=5))
    s("list BLPOP (element ready)", lambda: [r.rpush("list:b", "x"), r.blpop(["list:b"], timeout=1)])
    s("list BLPOP (times out after 0.1 s)", lambda: r.blpop(["list:empty"], timeout=0.1))
    s(
        "list SORT",
        lambda: [r.rpush("list:n", 3, 1, 2), r.sort("list:n"), r.sort("list:n", desc=True, start=0, num=2)],
    )

    # --- sets ----------------------------------------------------------------------------------
    s("set SADD SCARD", lambda: [r.sadd("set:s", "a", "b", "c", "d"), r.sadd("set:s", "a"), r.scard("set:s")])
    s("set SMEMBERS", lambda: unordered(r.smembers("set:s")))
    s("set SISMEMBER SMISMEMBER", lambda: [r.sismember("set:s", "a"), r.smismember("set:s", ["a", "x", "c"])])
    s(
        "set SINTER SUNION SDIFF (hash tag)",
        lambda: [
            r.sadd("{set}a", 1, 2, 3),
            r.sadd("{set}b", 2, 3, 4),
            unordered(r.sinter("{set}a", "{set}b")),
            unordered(r.sunion("{set}a", "{set}b")),
            unordered(r.sdiff("{set}a", "{set}b")),
        ],
    )
    s(
        "set SINTERCARD SINTERSTORE SMOVE",
        lambda: [
            r.sintercard(2, ["{set}a", "{set}b"]),
            r.sinterstore("{set}c", ["{set}a", "{set}b"]),
            r.smove("{set}a", "{set}b", 1),
            unordered(r.smembers("{set}b")),
        ],
    )
    s("set SRANDMEMBER count", lambda: unordered(r.srandmember("set:s", 4)))

    def spop_count():
        # Which members SPOP takes is random: compare the reply's type, its size, and that the
        # popped and the remaining members together are the set.
        popped = r.spop("set:s", 2)
        return {
            "type": type(popped).__name__,
            "popped": len(popped),
            "all": unordered(list(popped) + list(r.smembers("set:s"))),
        }

    s("set SPOP count", spop_count)
    s("set SPOP count past the end", lambda: [r.sadd("set:p", "a", "b"), unordered(r.spop("set:p", 10))])
    s(
        "set SREM",
        lambda: [r.sadd("set:r", "a", "b"), r.srem("set:r", "a", "zz"), unordered(r.smembers("set:r"))],
    )

    # --- sorted sets ---------------------------------------------------------------------------
    s("zset ZADD", lambda: r.zadd("zset:z", {"a": 1, "b": 2.5, "c": 3}))
    s("zset ZADD INCR", lambda: r.zadd("zset:z", {"a": 10}, incr=True))
    s(
        "zset ZADD NX GT CH",
        lambda: [r.zadd("zset:z", {"d": 4}, nx=True), r.zadd("zset:z", {"b": 5}, gt=True, ch=True)],
    )
    s(
        "zset ZSCORE ZMSCORE",
        lambda: [
            r.zscore("zset:z", "a"),
            r.zscore("zset:z", "none"),
            r.zmscore("zset:z", ["a", "none", "c"]),
        ],
    )
    s("zset ZINCRBY", lambda: r.zincrby("zset:z", 0.5, "c"))
    s(
        "zset ZRANK ZREVRANK ZCARD ZCOUNT",
        lambda: [
            r.zrank("zset:z", "c"),
            r.zrevrank("zset:z", "c"),
            r.zcard("zset:z"),
            r.zcount("zset:z", 2, 5),
        ],
    )
    s("zset ZRANGE", lambda: r.zrange("zset:z", 0, -1))
    s("zset ZRANGE WITHSCORES", lambda: r.zrange("zset:z", 0, -1, withscores=True))
    s("zset ZREVRANGE WITHSCORES", lambda: r.zrevrange("zset:z", 0, 1, withscores=True))
    s(
        "zset ZRANGEBYSCORE WITHSCORES LIMIT",
        lambda: r.zrangebyscore("zset:z", 2, "+inf", start=0, num=2, withscores=True),
    )
    s("zset ZRANGE BYSCORE REV", lambda: r.zrange("zset:z", "+inf", 2, byscore=True, desc=True))
    s(
        "zset ZRANGEBYLEX",
        lambda: [r.zadd("zset:lex", {"a": 0, "b": 0, "c": 0}), r.zrangebylex("zset:lex", "[a", "(c")],
    )
    s("zset ZRANDMEMBER count WITHSCORES", lambda: unordered(r.zrandmember("zset:z", 4, withscores=True)))
    s("zset ZPOPMIN count", lambda: r.zpopmin("zset:z", 2))
    s("zset ZPOPMAX", lambda: r.zpopmax("zset:z"))
    s(
        "zset ZUNIONSTORE ZINTER WITHSCORES (hash tag)",
        lambda: [
            r.zadd("{z}a", {"x": 1, "y": 2}),
            r.zadd("{z}b", {"y": 3, "w": 4}),
            r.zunionstore("{z}c", ["{z}a", "{z}b"]),
            r.zinter(["{z}a", "{z}b"], withscores=True),
            r.zrange("{z}c", 0, -1, withscores=True),
        ],
    )
    s("zset ZSCAN", lambda: r.zscan("{z}c", 0))
    s(
        "zset ZREM ZREMRANGEBYSCORE",
        lambda: [
            r.zrem("{z}c", "x"),
            r.zremrangebyscore("{z}c", 0, 4),
            r.zrange("{z}c", 0, -1, withscores=True),
        ],
    )

    # --- streams: explicit ids, so that replies do not depend on the clock ----------------------
    s("stream XADD", lambda: [r.xadd("stream:s", {"n": i, "who": f"w{i}"}, id=f"1-{i}") for i in range(1, 6)])
    s("stream XADD with an id too small", lambda: r.xadd("stream:s", {"n": 0}, id="1-1"))
    s("stream XLEN XRANGE", lambda: [r.xlen("stream:s"), r.xrange("stream:s", "-", "+", count=3)])
    s("stream XREVRANGE", lambda: r.xrevrange("stream:s", "+", "-", count=2))
    s("stream XREAD", lambda: r.xread({"stream:s": "1-3"}, count=5))
    s("stream XREAD nothing new", lambda: r.xread({"stream:s": "1-5"}))
    s(
        "stream XGROUP CREATE x2",
        lambda: [r.xgroup_create("stream:s", "g1", id="0"), r.xgroup_create("stream:s", "g2", id="$")],
    )
    s("stream XREADGROUP", lambda: r.xreadgroup("g1", "c1", {"stream:s": ">"}, count=3))
    s("stream XREADGROUP second consumer", lambda: r.xreadgroup("g1", "c2", {"stream:s": ">"}, count=1))
    s("stream XACK", lambda: r.xack("stream:s", "g1", "1-1", "1-9"))
    s("stream XPENDING summary", lambda: r.xpending("stream:s", "g1"))
    s("stream XCLAIM", lambda: r.xclaim("stream:s", "g1", "c2", 0, ["1-2"]))
    s("stream XINFO STREAM", lambda: r.xinfo_stream("stream:s"))
    s("stream XINFO GROUPS", lambda: r.xinfo_groups("stream:s"))

    def consumers():
        # idle / inactive are times: left out.
        return [{k: c.get(k) for k in ("name", "pending")} for c in r.xinfo_consumers("stream:s", "g1")]

    s("stream XINFO CONSUMERS (name, pending)", consumers)
    s(
        "stream XDEL XTRIM",
        lambda: [r.xdel("stream:s", "1-5"), r.xtrim("stream:s", maxlen=2), r.xlen("stream:s")],
    )

    # --- geo -----------------------------------------------------------------------------------
    s(
        "geo GEOADD",
        lambda: r.geoadd("geo:sicily", [13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"]),
    )
    s("geo GEOPOS", lambda: r.geopos("geo:sicily", "Palermo", "Catania", "Nowhere"))
    s(
        "geo GEODIST",
        lambda: [
            r.geodist("geo:sicily", "Palermo", "Catania", unit="km"),
            r.geodist("geo:sicily", "Palermo", "Nowhere"),
        ],
    )
    s("geo GEOHASH", lambda: r.geohash("geo:sicily", "Palermo", "Catania"))
    s(
        "geo GEOSEARCH WITHDIST WITHCOORD",
        lambda: r.geosearch(
            "geo:sicily",
            longitude=15,
            latitude=37,
            radius=200,
            unit="km",
            withdist=True,
            withcoord=True,
            sort="ASC",
        ),
    )
    s(
        "geo GEOSEARCH BYBOX",
        lambda: r.geosearch("geo:sicily", member="Palermo", width=400, height=400, unit="km"),
    )

    # --- hyperloglog, bitmaps, LCS -------------------------------------------------------------
    s(
        "hll PFADD PFCOUNT",
        lambda: [r.pfadd("{hll}a", "a", "b", "c"), r.pfadd("{hll}a", "a"), r.pfcount("{hll}a")],
    )
    s(
        "hll PFMERGE (hash tag)",
        lambda: [
            r.pfadd("{hll}b", "c", "d"),
            r.pfmerge("{hll}c", "{hll}a", "{hll}b"),
            r.pfcount("{hll}c"),
            r.pfcount("{hll}a", "{hll}b"),
        ],
    )
    s(
        "bitmap SETBIT GETBIT BITCOUNT BITPOS",
        lambda: [
            r.setbit("bit:b", 7, 1),
            r.setbit("bit:b", 7, 1),
            r.getbit("bit:b", 7),
            r.bitcount("bit:b"),
            r.bitpos("bit:b", 1),
        ],
    )
    s(
        "bitmap BITFIELD",
        lambda: r.bitfield("bit:f").set("u8", 0, 200).incrby("u8", 0, 100).get("u4", 0).execute(),
    )
    s(
        "bitmap BITOP (hash tag)",
        lambda: [
            r.set("{bit}a", "abc"),
            r.set("{bit}b", "abd"),
            r.bitop("AND", "{bit}c", "{bit}a", "{bit}b"),
            r.get("{bit}c"),
        ],
    )
    s("lcs LCS", lambda: [r.mset({"{lcs}a": "ohmytext", "{lcs}b": "mynewtext"}), r.lcs("{lcs}a", "{lcs}b")])
    s("lcs LCS LEN", lambda: r.lcs("{lcs}a", "{lcs}b", len=True))
    s(
        "lcs LCS IDX MINMATCHLEN WITHMATCHLEN",
        lambda: r.lcs("{lcs}a", "{lcs}b", idx=True, minmatchlen=2, withmatchlen=True),
    )

    # --- generic commands ----------------------------------------------------------------------
    s("generic EXISTS over nodes", lambda: r.exists("str:m1", "str:m2", "str:none", "hash:h", "str:m1"))
    s(
        "generic TYPE",
        lambda: [
            r.type(k)
            for k in ("str:m1", "hash:h", "list:n", "set:r", "zset:lex", "stream:s", "geo:sicily", "str:none")
        ],
    )
    s(
        "generic EXPIRE TTL PERSIST",
        lambda: [
            r.expire("str:m1", 100),
            90 <= r.ttl("str:m1") <= 100,
            r.persist("str:m1"),
            r.ttl("str:m1"),
            r.ttl("str:none"),
        ],
    )
    s("generic EXPIRE NX/GT", lambda: [r.expire("str:m2", 100, nx=True), r.expire("str:m2", 50, gt=True)])
    s(
        "generic RENAME COPY (hash tag)",
        lambda: [
            r.set("{gen}a", "v"),
            r.rename("{gen}a", "{gen}b"),
            r.copy("{gen}b", "{gen}c"),
            r.mget(["{gen}a", "{gen}b", "{gen}c"]),
        ],
    )
    s("generic OBJECT ENCODING", lambda: [r.object("encoding", "str:m3"), r.object("encoding", "hash:h")])
    s(
        "generic DUMP RESTORE",
        lambda: [r.restore("str:restored", 0, raw.dump(b"list:n")), r.lrange("str:restored", 0, -1)],
    )
    s(
        "generic DEL UNLINK over nodes",
        lambda: [r.delete("str:m3", "str:m4", "str:none"), r.unlink("str:m5", "str:m6")],
    )
    s("generic TOUCH", lambda: r.touch("str:m7", "str:m8", "str:none"))
    s("generic RANDOMKEY is a key", lambda: r.exists(r.randomkey()))

    # --- errors --------------------------------------------------------------------------------
    s("error WRONGTYPE", lambda: r.get("hash:h"))
    s("error unknown command", lambda: r.execute_command("NOSUCHCOMMAND", "x"))
    s("error wrong arity", lambda: r.execute_command("GET"))
    s("error syntax", lambda: r.execute_command("SET", "str:x", "1", "EX"))

    # --- replicated layers: route: keeps 2 copies, meta: 3 with quorum reads --------------------
    # (their TTLs are set by strata's layer policy, so TTLs are not compared here)
    s("layer route: SET GET", lambda: [r.set("route:q1", "gpt"), r.get("route:q1")])
    s("layer route: HSET HGETALL", lambda: [r.hset("route:h", mapping={"a": 1}), r.hgetall("route:h")])
    s("layer meta: SET GET (quorum read)", lambda: [r.set("meta:m", "caps"), r.get("meta:m")])
    s(
        "layer route: EXISTS DEL",
        lambda: [r.exists("route:q1", "route:h"), r.delete("route:q1", "route:h"), r.exists("route:q1")],
    )

    # --- pipelines -----------------------------------------------------------------------------
    def mixed_pipeline():
        p = r.pipeline(transaction=False)
        p.set("pipe:a", 1).incr("pipe:a").get("pipe:a").hset("pipe:h", "f", "v").hgetall("pipe:h")
        p.zadd("pipe:z", {"m": 1.5}).zrange("pipe:z", 0, -1, withscores=True).lpush("pipe:a", "x")
        p.get("pipe:none").mget(["pipe:a", "pipe:none"])
        return p.execute(raise_on_error=False)

    s("pipeline mixed, non-transactional", mixed_pipeline)

    def write_then_read(n, size, rounds):
        # The pipelines of the issue: N × (SET, GET) sent at once, replies read after. A hang
        # (redis-py writes the whole pipeline before it reads a reply) need not come every time:
        # the 4 KiB one hung in about half the tries, mostly as the first pipeline of a new
        # connection. So: up to `rounds` rounds, each on a new connection, until one goes wrong.
        value = b"x" * size
        for _ in range(rounds):
            c = client()
            p = c.pipeline(transaction=False)
            for i in range(n):
                p.set(f"big:{i}", value)
                p.get(f"big:{i}")
            try:
                out = p.execute(raise_on_error=False)
            finally:
                c.close()
            result = {
                "replies": len(out),
                "set_ok": sum(1 for x in out[0::2] if x is True),
                "get_equal": sum(1 for x in out[1::2] if x == value),
                "errors": sorted({json.dumps(error_of(x)) for x in out if isinstance(x, Exception)}),
            }
            if result != {"replies": 2 * n, "set_ok": n, "get_equal": n, "errors": []}:
                break
        return result

    s("pipeline 400 × (SET 64 KiB, GET)", lambda: write_then_read(400, 65536, rounds=2))
    s("pipeline 2000 × (SET 4 KiB, GET)", lambda: write_then_read(2000, 4096, rounds=5))

    def async_write_then_read(n, size):
        # The same with redis.asyncio, whose pipelines also send everything before reading.
        import asyncio
        import redis.asyncio as aioredis

        async def run():
            c = aioredis.Redis(
                host="127.0.0.1",
                port=a.port,
                protocol=a.protocol,
                socket_timeout=a.timeout,
                socket_connect_timeout=a.timeout,
                **tls,
            )
            try:
                p = c.pipeline(transaction=False)
                value = b"y" * size
                for i in range(n):
                    p.set(f"abig:{i}", value)
                    p.get(f"abig:{i}")
                out = await asyncio.wait_for(p.execute(raise_on_error=False), timeout=4 * a.timeout)
                return {
                    "replies": len(out),
                    "set_ok": sum(1 for x in out[0::2] if x is True),
                    "get_equal": sum(1 for x in out[1::2] if x == value),
                }
            finally:
                await c.aclose() if hasattr(c, "aclose") else await c.close()

        try:
            return asyncio.run(run())
        except asyncio.TimeoutError:
            return {"error": "timeout"}

    s("asyncio pipeline 400 × (SET 64 KiB, GET)", lambda: async_write_then_read(400, 65536))
    s("pipeline after the big ones: PING", r.ping)

    # --- transactions --------------------------------------------------------------------------
    def multi_exec():
        p = r.pipeline(transaction=True)
        p.set("{tx}a", 1).incr("{tx}b").hset("{tx}h", mapping={"k": "v"}).hgetall("{tx}h")
        p.zadd("{tx}z", {"m": 2}).zscore("{tx}z", "m").zrange("{tx}z", 0, -1, withscores=True).get("{tx}none")
        return p.execute()

    s("transaction MULTI/EXEC", multi_exec)

    def watch_exec(touch_from_other):
        with r.pipeline() as p:
            p.watch("{tx}a")
            current = int(p.get("{tx}a"))
            if touch_from_other:
                other.set("{tx}a", 100)
            p.multi()
            p.set("{tx}a", current + 1).incr("{tx}b").get("{tx}a")
            return p.execute()

    s("transaction WATCH, EXEC runs", lambda: watch_exec(False))
    s("transaction WATCH, key changed by another client", lambda: watch_exec(True))
    s(
        "transaction error inside",
        lambda: r.pipeline().set("{tx}s", "x").incr("{tx}s").get("{tx}s").execute(raise_on_error=False),
    )

    # --- pub/sub -------------------------------------------------------------------------------
    p = r.pubsub()
    s("pubsub SUBSCRIBE", lambda: [p.subscribe("chan:news"), p.get_message(timeout=T)])
    s("pubsub PUBLISH from another connection", lambda: other.publish("chan:news", "hello"))
    s("pubsub message received", lambda: p.get_message(timeout=T))
    s("pubsub PSUBSCRIBE", lambda: [p.psubscribe("chan:*"), p.get_message(timeout=T)])
    s("pubsub PUBSUB NUMSUB NUMPAT", lambda: [other.pubsub_numsub("chan:news"), other.pubsub_numpat()])
    s("pubsub PUBLISH to channel and pattern", lambda: other.publish("chan:news", "again"))
    s("pubsub two messages received", lambda: unordered([p.get_message(timeout=T), p.get_message(timeout=T)]))
    s(
        "pubsub UNSUBSCRIBE PUNSUBSCRIBE",
        lambda: [
            p.unsubscribe("chan:news"),
            p.get_message(timeout=T),
            p.punsubscribe(),
            p.get_message(timeout=T),
        ],
    )
    p.close()
    s("pubsub PUBLISH with no subscriber", lambda: other.publish("chan:news", "nobody"))

    # --- Lua -----------------------------------------------------------------------------------
    s(
        "lua EVAL returning a table",
        lambda: r.eval("return {1, 2, 'three', {4, 'five'}, redis.status_reply('OK'), false, 3.99}", 0),
    )
    s(
        "lua EVAL with keys and args",
        lambda: r.eval(
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])", 1, "lua:k", "v1"
        ),
    )
    s(
        "lua setresp(3) HGETALL",
        lambda: [
            r.hset("lua:h", mapping={"a": 1, "b": 2}),
            r.eval("redis.setresp(3); return redis.call('HGETALL', KEYS[1])", 1, "lua:h"),
        ],
    )
    s(
        "lua setresp(3) ZSCORE",
        lambda: [
            r.zadd("lua:z", {"m": 1.5}),
            r.eval("redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')", 1, "lua:z"),
        ],
    )
    s("lua error_reply", lambda: r.eval("return redis.error_reply('my error')", 0))
    script = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    s(
        "lua register_script (EVALSHA)",
        lambda: [script(keys=["lua:n"], args=[5]), script(keys=["lua:n"], args=[2])],
    )
    s("lua SCRIPT EXISTS", lambda: r.script_exists(script.sha, "0" * 40))

    def with_lock():
        # redis-py's Lock: SET NX PX to take it, Lua scripts to extend and release it.
        lock = r.lock("lock:{job}", timeout=5, blocking_timeout=1)
        got = lock.acquire()
        owned = lock.owned()
        lock.release()
        return [got, owned, r.exists("lock:{job}")]

    s("lua redis-py Lock", with_lock)

    # --- server commands -----------------------------------------------------------------------
    s("CONFIG GET maxmemory", lambda: r.config_get("maxmemory"))
    s("TIME answers (value left out)", lambda: len(r.time()))

    # --- keyspace: a known set of keys in an empty database -------------------------------------
    # 200 plain keys, 3 of the replicated route: layer, 2 of meta:; every key must be counted once.
    s("keyspace FLUSHALL", r.flushall)

    def fill():
        p = r.pipeline(transaction=False)
        for i in range(200):
            p.set(f"scan:{i}", i)
        for i in range(3):
            p.set(f"route:scan{i}", i)
        for i in range(2):
            p.set(f"meta:scan{i}", i)
        return sum(1 for x in p.execute() if x is True)

    s("keyspace write 205 keys", fill)
    s("keyspace DBSIZE", r.dbsize)
    s("keyspace KEYS * (sorted)", lambda: sorted(r.keys("*")))
    s("keyspace scan_iter (sorted, duplicates kept)", lambda: sorted(r.scan_iter(count=50)))
    s("keyspace SCAN MATCH route:* (sorted)", lambda: sorted(r.scan_iter(match="route:*", count=1000)))
    s("keyspace SCAN TYPE string count", lambda: len(list(r.scan_iter(count=1000, _type="string"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
