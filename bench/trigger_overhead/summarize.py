#!/usr/bin/env python3
"""Summarize raw.csv from run.sh (or several raw.csv files: their rounds are pooled).

Each non-"none" measurement is compared with the mean of the two "none" runs that bracket
it in the same round (the runs immediately before and after it). Reported per test/variant:
median raw value, min-max, and the median / min-max / IQR of the per-round ratios.

pgbench_* values are TPS (pgbench_*_cpu: server CPU microseconds per transaction): ratio = TPS(variant)/TPS(none), cost = 1/ratio - 1 (extra time per tx).
*_cpu tests are the backend's on-CPU milliseconds for the same runs.
Other tests are milliseconds: ratio = time(variant)/time(none), cost = ratio - 1.
"""
import csv
import statistics as st
import sys
from collections import OrderedDict, defaultdict


def q(xs, p):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main(paths):
    runs = defaultdict(list)  # (file, test, round) -> [(seq, variant, value)]
    tests = OrderedDict()
    for fi, path in enumerate(paths):
        with open(path) as f:
            for row in csv.DictReader(f):
                if not row["value"] or row["round"] == "0":   # round 0 = warm-up, discarded
                    continue
                key = (fi, row["test"], int(row["round"]))
                runs[key].append((int(row["seq"]), row["variant"], float(row["value"])))
                tests.setdefault(row["test"], [])
                if row["variant"] not in tests[row["test"]]:
                    tests[row["test"]].append(row["variant"])

    raw = defaultdict(list)
    ratios = defaultdict(list)
    by_round = defaultdict(dict)  # (test, variant) -> {(file, round): ratio}
    for (fi, test, rnd), rows in runs.items():
        rows.sort()
        for i, (seq, v, val) in enumerate(rows):
            raw[(test, v)].append(val)
            if v == "none":
                continue
            before = [x[2] for x in rows[:i] if x[1] == "none"][-1:]
            after = [x[2] for x in rows[i + 1:] if x[1] == "none"][:1]
            ref = before + after
            if ref:
                ratios[(test, v)].append(val / st.mean(ref))
                by_round[(test, v)][(fi, rnd)] = val / st.mean(ref)

    out = []
    for test, variants in tests.items():
        tps = test.startswith("pgbench") and not test.endswith("_cpu")
        unit = "TPS" if tps else ("CPU µs/tx" if test.startswith("pgbench") else
                                  ("CPU ms" if test.endswith("_cpu") else "ms"))
        out.append(f"\n### {test}\n")
        out.append(f"| variant | n | median {unit} | min–max {unit} | median ratio | ratio min–max | ratio IQR | cost (median) |")
        out.append("|---|---|---|---|---|---|---|---|")
        order = ["none"] + [v for v in variants if v != "none"]
        for v in order:
            vals = raw[(test, v)]
            if not vals:
                continue
            line = f"| {v} | {len(vals)} | {st.median(vals):.0f} | {min(vals):.0f}–{max(vals):.0f} |"
            rs = ratios.get((test, v))
            if rs:
                m = st.median(rs)
                cost = (1 / m - 1) if tps else (m - 1)
                line += (f" {m:.3f} | {min(rs):.3f}–{max(rs):.3f} | {q(rs, .25):.3f}–{q(rs, .75):.3f} |"
                         f" {cost * 100:+.1f}% |")
            else:
                line += " 1 | | | |"
            out.append(line)
    # Head to head: in every round where both variants ran, (ratio of a) / (ratio of b),
    # each against its own bracketing "none" runs. For TPS above 1 means a is faster; for
    # CPU and time below 1 means a is cheaper.
    pairs = [tuple(p.split(":")) for p in PAIRS]
    head = []
    for test in tests:
        tps = test.startswith("pgbench") and not test.endswith("_cpu")
        for a, b in pairs:
            ra, rb = by_round.get((test, a), {}), by_round.get((test, b), {})
            common = sorted(set(ra) & set(rb))
            if not common:
                continue
            rs = [ra[k] / rb[k] for k in common]
            better = sum(1 for r in rs if (r > 1 if tps else r < 1))
            head.append(f"| {test} | {a} / {b} | {len(rs)} | {st.median(rs):.3f} | {min(rs):.3f}–{max(rs):.3f} |"
                        f" {q(rs, .25):.3f}–{q(rs, .75):.3f} | {better}/{len(rs)} |")
    if head:
        out.append("\n### head to head (per round: ratio of a / ratio of b; TPS: >1 = a faster; CPU/time: <1 = a cheaper)\n")
        out.append("| test | a / b | rounds | median | min–max | IQR | rounds a better |")
        out.append("|---|---|---|---|---|---|---|")
        out.extend(head)
    print("\n".join(out))


PAIRS = ["pgduplex:bucardo", "pgduplex:row", "pgduplex:stmt", "pgduplex_empty:pgduplex_emptynotrans",
         "pgduplex_emptynoset:pgduplex_empty", "pgduplex_noset:pgduplex", "pgduplex_nopk:pgduplex",
         "pgduplex_empty:pgduplex", "pgduplex_updnojoin:pgduplex", "pgduplex_nowhen:pgduplex",
         "pgduplex_noset:bucardo", "pgduplex_set:bucardo", "pgduplex_set:pgduplex",
         "pgduplex:pgduplex_prev", "pgduplex_prev:bucardo"]


if __name__ == "__main__":
    main(sys.argv[1:])
