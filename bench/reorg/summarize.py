#!/usr/bin/env python3
"""Summary of bench/reorg/ab.sh's raw.csv: per area the median wall time of each
binary, NEW/OLD as the ratio of the medians and as the median of the per-round
ratios (above 1: the new binary is slower), the per-round ratios, peak RSS.

Usage: python3 bench/reorg/summarize.py OUT/raw.csv
"""
import csv
import statistics
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
areas = []
by = {}
for r in rows:
    if r["area"] not in areas:
        areas.append(r["area"])
    by.setdefault(r["area"], {}).setdefault(r["round"], {})[r["binary"]] = r


def med(xs):
    return statistics.median(xs) if xs else float("nan")


labels = {r["binary"]: r["label"] for r in rows}
print(f"old = {labels.get('old', 'old')}, new = {labels.get('new', 'new')}; "
      "ratio = new / old (above 1: new slower)\n")
print("| area | old median s (min–max) | new median s (min–max) | "
      "new/old: median of per-round ratios | ratio of medians | per-round ratios | apply s old / new (medians) | "
      "peak RSS MiB old / new (max) | rounds |")
print("|---|---|---|---|---|---|---|---|---|")
for a in areas:
    rounds = by[a]
    s = {b: [float(x[b]["seconds"]) for x in rounds.values() if b in x] for b in ("old", "new")}
    pairs = [float(x["new"]["seconds"]) / float(x["old"]["seconds"])
             for _, x in sorted(rounds.items(), key=lambda kv: int(kv[0]))
             if "old" in x and "new" in x]
    ap = {b: [float(x[b]["apply_s"]) for x in rounds.values() if b in x and x[b]["apply_s"]]
          for b in ("old", "new")}
    rss = {b: max((int(x[b]["peak_rss_kb"]) for x in rounds.values() if b in x), default=0) / 1024
           for b in ("old", "new")}

    def cell(b):
        return f"{med(s[b]):.2f} ({min(s[b]):.2f}–{max(s[b]):.2f})" if s[b] else "—"

    apply = (f"{med(ap['old']):.2f} / {med(ap['new']):.2f}"
             if ap["old"] and ap["new"] else "—")
    print(f"| {a} | {cell('old')} | {cell('new')} | "
          f"**{med(pairs):.3f}** | {med(s['new']) / med(s['old']):.3f} | "
          f"{', '.join(f'{p:.3f}' for p in pairs)} | {apply} | "
          f"{rss['old']:.1f} / {rss['new']:.1f} | {len(pairs)} |")
