#!/usr/bin/env python3
"""Summary of bench/scan/run.sh: per variant the median wall seconds and peak RSS, and
the median over rounds of (variant / floor of the same round)."""
import csv
import statistics
import sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1])))
by_round = defaultdict(dict)
for r in rows:
    by_round[r["round"]][r["variant"]] = r
variants = sorted({r["variant"] for r in rows})
print("| variant | median s | min–max s | peak RSS MiB (max) | ratio to the floor, median (min–max) |")
print("|---|---|---|---|---|")
for v in variants:
    secs = [float(r["seconds"]) for r in rows if r["variant"] == v]
    rss = [int(r["maxrss_kb"]) for r in rows if r["variant"] == v and r["maxrss_kb"]]
    floor_name = "floor_diff" if v in ("find_one_j2", "floor_diff") else "floor"
    ratios = [
        float(rd[v]["seconds"]) / float(rd[floor_name]["seconds"])
        for rd in by_round.values()
        if v in rd and floor_name in rd
    ]
    print(
        f"| {v} | {statistics.median(secs):.2f} | {min(secs):.2f}–{max(secs):.2f} | "
        f"{(max(rss) / 1024):.1f} | "
        + (f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "")
        + " |"
        if rss
        else f"| {v} | {statistics.median(secs):.2f} | {min(secs):.2f}–{max(secs):.2f} | | "
        + (f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "")
        + " |"
    )
