#!/usr/bin/env python3
# scripts/clients/compare.py - compares the recordings of scripts/clients-check.sh.
#
# Each run is one client library in one protocol, recorded once against a plain redis-server
# ("direct") and once against strata by a scenario program (scenario.py, scenario-*.mjs): JSON
# files {"steps": [[step, result], ...]}. Prints one table row per step whose results differ
# (values as compact JSON, cut around the first difference; for lists, which items only one side
# has), then a summary line per run: "N steps, M differ". --full FILE also writes every
# difference with the whole values. A run whose recording is missing (the scenario crashed) or
# that the library cannot do (--skip) is reported in the summary.
#
# A recording may also hold "stale": reads a scenario found to return an older value than the
# last write when it should have known (the client-side caching scenarios, tracking*): listed,
# for either side, and a failure; and "timings": named figures (ms) shown side by side, not
# compared. --title names the check in the table's heading.
#
# Usage: compare.py [--width N] [--full FILE] [--title TEXT]
#            (--run LABEL PROTO DIRECT.json STRATA.json | --skip LABEL PROTO REASON)...
# Exit status: 0 no difference, 3 differences (or a failed run, or a stale read), 2 bad usage.

import argparse
import json
import sys
from collections import Counter

MISSING = object()


def load(path):
    """The recording's steps and its other parts ({} when it has none), or None and why not."""
    try:
        with open(path) as f:
            recording = json.load(f)
        return recording["steps"], recording, None
    except (OSError, ValueError, KeyError) as e:
        return None, {}, f"no recording ({e.__class__.__name__}: {e})"


def dumps(v):
    if v is MISSING:
        return "(no such step)"
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def cut(a, b, width):
    """Both strings cut to width, around the first position where they differ."""
    if len(a) <= width and len(b) <= width:
        return a, b
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, i - width // 3)

    def one(s):
        piece = s[start : start + width - (1 if start else 0)]
        if start:
            piece = "…" + piece
        if len(piece) > width or start + len(piece) < len(s):
            piece = piece[: width - 1] + "…"
        return piece

    return one(a), one(b)


def list_note(d, s):
    """For two long lists of scalars: the items only one side has (duplicates count)."""
    if not (isinstance(d, list) and isinstance(s, list)) or max(len(d), len(s)) < 5:
        return None
    if any(isinstance(x, (list, dict)) for x in d + s):
        return None
    cd = Counter(json.dumps(x, ensure_ascii=False) for x in d)
    cs = Counter(json.dumps(x, ensure_ascii=False) for x in s)
    only_s, only_d = cs - cd, cd - cs
    if not only_s and not only_d:
        return f"same items, other order ({len(d)} items)"

    def show(c):
        items = [k + (f" ×{n}" if n > 1 else "") for k, n in sorted(c.items())]
        more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
        return ", ".join(items[:6]) + more if items else "-"

    return f"{len(d)} vs {len(s)} items; only in strata: {show(only_s)}; " f"only in direct: {show(only_d)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--full")
    ap.add_argument("--title")
    ap.add_argument(
        "--run", nargs=4, action="append", default=[], metavar=("LABEL", "PROTO", "DIRECT", "STRATA")
    )
    ap.add_argument("--skip", nargs=3, action="append", default=[], metavar=("LABEL", "PROTO", "REASON"))
    a = ap.parse_args()

    rows, summary, full, stale, timings = [], [], [], [], []
    failed = False
    for label, proto, dpath, spath in a.run:
        d, drec, derr = load(dpath)
        s, srec, serr = load(spath)
        for side, rec in (("direct", drec), ("strata", srec)):
            stale.extend(f"{label} {proto} {side}: {x}" for x in rec.get("stale", []))
        dt, st = drec.get("timings", {}), srec.get("timings", {})
        for name in list(dt) + [n for n in st if n not in dt]:
            timings.append((label, proto, name, dt.get(name), st.get(name)))
        if d is None or s is None:
            failed = True
            why = "; ".join(f"{side}: {e}" for side, e in (("direct", derr), ("strata", serr)) if e)
            summary.append((label, proto, f"run failed: {why}"))
            continue
        dmap, smap = dict(d), dict(s)
        names = [n for n, _ in d] + [n for n, _ in s if n not in dmap]
        differ = 0
        for name in names:
            dv, sv = dmap.get(name, MISSING), smap.get(name, MISSING)
            if dumps(dv) == dumps(sv):
                continue
            differ += 1
            dt, st = cut(dumps(dv), dumps(sv), a.width)
            note = None if MISSING in (dv, sv) else list_note(dv, sv)
            rows.append((label, proto, name, dt, st, note))
            full.append(f"{label} {proto} | {name}\n  direct: {dumps(dv)}\n  strata: {dumps(sv)}\n")
        summary.append((label, proto, f"{len(names)} steps, {differ} differ"))
    for label, proto, reason in a.skip:
        summary.append((label, proto, f"not run: {reason}"))

    head = ("client", "protocol", "step", "direct", "strata")
    title = f"{a.title}: " if a.title else ""
    if rows:
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
        fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
        print(f"{title}differences, direct Redis vs strata (results as JSON, cut around the first difference):")
        print(fmt(head))
        print(fmt(["-" * w for w in widths]))
        for r in rows:
            print(fmt(r[:5]))
            if r[5]:
                print(" " * (widths[0] + widths[1] + 4) + "↳ " + r[5])
    else:
        print(f"{title}no differences between direct Redis and strata")
    if stale:
        print()
        print("stale reads (a GET older than the last write, when the client should have known):")
        for x in stale:
            print(f"  {x}")
    if timings:
        print()
        print("invalidation arrived after (ms from the write's reply; none: not within the step timeout):")
        head = ("client", "protocol", "change", "direct", "strata")
        cells = [tuple("none" if v is None else str(v) for v in t) for t in timings]
        widths = [max(len(r[i]) for r in cells + [head]) for i in range(5)]
        for r in [head] + cells:
            line = "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
            print("  " + line.rstrip())
    print()
    print("summary:")
    lw = max(len(x[0]) for x in summary) if summary else 0
    for label, proto, text in summary:
        print(f"  {label.ljust(lw)}  {proto.ljust(5)}  {text}")

    if a.full:
        with open(a.full, "w") as f:
            f.write("\n".join(full) if full else "no differences\n")
    return 3 if rows or failed or stale else 0


if __name__ == "__main__":
    sys.exit(main())
