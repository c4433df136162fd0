#!/usr/bin/env python3
"""Summarise a bench/replicate/run.sh output directory as markdown.

usage: python3 bench/replicate/summarize.py <out dir>
Medians over rounds with min-max; ratios pgduplex/Bucardo are paired by round and backlog.
"""
import csv
import glob
import os
import statistics as st
import sys

d = sys.argv[1]


def rows(name):
    p = os.path.join(d, name)
    return list(csv.DictReader(open(p))) if os.path.exists(p) else []


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(v):
    v = [x for x in v if x is not None]
    return st.median(v) if v else None


def spread(v, fmt="{:.0f}"):
    v = [x for x in v if x is not None]
    if not v:
        return "NA"
    return f"{fmt.format(st.median(v))} ({fmt.format(min(v))}–{fmt.format(max(v))})"


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")


out = []
c = rows("catchup.csv")
for r in c:
    # runs of several daemon binaries in one session (run.sh usebin + BIN_TAG): one "tool" each
    if r["tool"] == "pgduplex" and r.get("bin"):
        r["tool"] = f"pgduplex@{r['bin']}"
pg_tools = sorted({r["tool"] for r in c if r["tool"] != "bucardo"})
if c:
    out.append("## (a) Catch-up: drain of a pgbench backlog built on left (changed rows = 4 x transactions)\n")
    out.append("| backlog (tx) | changed rows | tool | n | drain wall s | changed rows/s (wall) | rows/s (apply phase) | daemon CPU s (user+sys) | peak RSS MiB | converged |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    sizes = sorted({int(r["backlog_tx"]) for r in c})
    for tx in sizes:
        for tool in pg_tools + ["bucardo"]:
            g = [r for r in c if int(r["backlog_tx"]) == tx and r["tool"] == tool]
            if not g:
                continue
            cpu = [num(r["user_s"]) + num(r["sys_s"]) if num(r["user_s"]) is not None else None for r in g]
            out.append(
                f"| {tx:,} | {tx * 4:,} | {tool} | {len(g)} | {spread([num(r['wall_s']) for r in g], '{:.2f}')} | "
                f"{spread([num(r['rows_per_s_wall']) for r in g])} | {spread([num(r['rows_per_s_apply']) for r in g])} | "
                f"{spread(cpu, '{:.2f}')} | {spread([num(r['peak_rss_kb']) / 1024 if num(r['peak_rss_kb']) else None for r in g], '{:.1f}')} | "
                f"{' '.join(sorted({r['converged'] for r in g}))} |"
            )
    for col, what in (("rows_per_s_wall", "end to end (wall)"), ("rows_per_s_apply", "apply phase only")):
        out.append(f"\nRatio pgduplex / Bucardo, changed rows/s {what}, paired by round (rounds whose Bucardo started with stale bookkeeping marked *):\n")
        out.append("| pgduplex | backlog (tx) | ratios per round | median, all rounds | median, clean rounds |")
        out.append("|---|---|---|---|---|")
        for tool, tx in [(t, x) for t in pg_tools for x in sizes]:
            rs, clean, cells = [], [], []
            for r in sorted({x["round"] for x in c}, key=int):
                p = [num(x[col]) for x in c if x["round"] == r and int(x["backlog_tx"]) == tx and x["tool"] == tool]
                bb = [x for x in c if x["round"] == r and int(x["backlog_tx"]) == tx and x["tool"] == "bucardo"]
                b = [num(x[col]) for x in bb]
                if p and b and p[0] and b[0]:
                    rs.append(p[0] / b[0])
                    stale = num(bb[0].get("bucardo_stale_deltas")) or 0
                    if stale == 0:
                        clean.append(p[0] / b[0])
                    cells.append(f"r{r} {p[0] / b[0]:.2f}{'*' if stale else ''}")
            if rs:
                out.append(f"| {tool} | {tx:,} | {' '.join(cells)} | **{st.median(rs):.2f}** | **{st.median(clean):.2f}** |" if clean else f"| {tool} | {tx:,} | {' '.join(cells)} | **{st.median(rs):.2f}** | — |")
    out.append("\nLinearity: drain time per changed row (µs, wall; median over rounds):\n")
    out.append("| tool | " + " | ".join(f"{tx:,} tx" for tx in sizes) + " |")
    out.append("|---|" + "---|" * len(sizes))
    for tool in pg_tools + ["bucardo"]:
        cells = []
        for tx in sizes:
            v = [num(r["wall_s"]) * 1e6 / (tx * 4) for r in c if int(r["backlog_tx"]) == tx and r["tool"] == tool]
            cells.append(f"{st.median(v):.2f}" if v else "—")
        out.append(f"| {tool} | " + " | ".join(cells) + " |")
    out.append("")

lg = rows("lag.csv")
if lg:
    out.append("## (b) Steady-state lag (oldest pending change age on left, sampled)\n")
    out.append("| round | mode | pgbench tps | samples | p50 s | p90 s | p99 s | max s | daemon VmHWM MiB | converged |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in lg:
        out.append(f"| {r['round']} | {r['mode']} | {r['tps']} | {r['samples']} | {r['lag_p50']} | {r['lag_p90']} | {r['lag_p99']} | {r['lag_max']} | {num(r['peak_rss_kb']) / 1024:.1f} | {r['converged']} |")
    for mode in ("max", "fixed"):
        v = []
        for f in sorted(glob.glob(os.path.join(d, f"lag_r*_{mode}.csv"))):
            v += [float(l.split(",")[1]) for l in open(f) if l.count(",") == 1]
        if v:
            out.append(f"\nAll {mode}-rate samples pooled (n={len(v)}): p50 {pct(v, .5):.3f} s, p99 {pct(v, .99):.3f} s, max {max(v):.3f} s.")
    out.append("")

sd = rows("steady.csv")
if sd:
    out.append("## Steady state: the daemon's own cost at a fixed pgbench rate on left\n")
    out.append("| bin | runs | rate | daemon CPU µs per changed row (median; range) | user / sys s (medians) | left transactions besides pgbench's, per pgbench tx | lag p50 / p99 / max s (medians) |")
    out.append("|---|---|---|---|---|---|---|")
    for tag in dict.fromkeys(r["bin"] for r in sd):
        g = [r for r in sd if r["bin"] == tag]
        cpu = [num(r["daemon_cpu_us_per_row"]) for r in g]
        other = [num(r["left_xacts_not_pgbench"]) / num(r["tx"]) for r in g if num(r["tx"])]
        out.append(
            f"| {tag} | {len(g)} | {g[0]['rate']} | {med(cpu):.0f} ({min(cpu):.0f}–{max(cpu):.0f}) | "
            f"{med([num(r['daemon_user_s']) for r in g]):.2f} / {med([num(r['daemon_sys_s']) for r in g]):.2f} | {med(other):.2f} | "
            f"{med([num(r['lag_p50']) for r in g]):.3f} / {med([num(r['lag_p99']) for r in g]):.3f} / {med([num(r['lag_max']) for r in g]):.3f} |"
        )
    out.append("")

b = rows("bigdrain.csv")
if b:
    out.append("## (d) 1,000,000-row backlog (one UPDATE of every pgbench_accounts row)\n")
    out.append("| round | tool | delta rows | UPDATE s | drain wall s | rows/s wall | rows/s apply | CPU s | peak RSS MiB | RSS p50 MiB | converged |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in b:
        cpu = f"{num(r['user_s']) + num(r['sys_s']):.1f}" if num(r["user_s"]) is not None else "NA"
        out.append(
            f"| {r['round']} | {r['tool']} | {r['delta_rows']} | {r['update_s']} | {r['wall_s']} | {r['rows_per_s_wall']} | {r['rows_per_s_apply']} | {cpu} | "
            f"{num(r['peak_rss_kb']) / 1024:.1f} | {num(r['rss_p50_kb']) / 1024 if num(r['rss_p50_kb']) else 0:.1f} | {r['converged']} |"
        )
    for f in sorted(glob.glob(os.path.join(d, "rss_big_r*_bucardo.csv"))):
        pts = [l.strip().split(",") for l in list(open(f))[1:] if l.strip()]
        if pts:
            out.append(f"\n{os.path.basename(f)}: Bucardo processes' RSS sum peak {max(int(p[1]) for p in pts) / 1024:.0f} MiB, largest single process peak {max(int(p[2]) for p in pts) / 1024:.0f} MiB, at the start {int(pts[0][1]) / 1024:.0f} MiB.")
    out.append("\nRSS curve of each pgduplex drain (MiB at 0, 10, 25, 50, 75, 90, 100 % of the run; first 2 s excluded as start-up):\n")
    for f in sorted(glob.glob(os.path.join(d, "rss_big_r*_pgduplex.csv"))):
        pts = [l.strip().split(",") for l in list(open(f))[1:] if l.strip()]
        pts = [(float(t), int(r)) for t, r, _ in pts]
        if not pts:
            continue
        t0 = pts[0][0]
        body = [p for p in pts if p[0] - t0 >= 2] or pts
        rs = [r for _, r in body]
        marks = [rs[min(len(rs) - 1, int(q * (len(rs) - 1)))] / 1024 for q in (0, .1, .25, .5, .75, .9, 1)]
        out.append(f"- {os.path.basename(f)}: {len(pts)} samples over {pts[-1][0] - t0:.1f} s: " + " / ".join(f"{m:.1f}" for m in marks)
                   + f"; min {min(rs) / 1024:.1f}, max {max(rs) / 1024:.1f}")
    out.append("\nTime between consecutive batches (each 10,000 delta rows) by quarter of the drain, median s (flat = linear in the backlog):\n")
    import datetime
    for f in sorted(glob.glob(os.path.join(d, "daemon_big_r*_pgduplex.log"))):
        ts = [datetime.datetime.fromisoformat(l[:26]) for l in open(f, errors="replace") if " batch " in l and " applied" in l]
        dt = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        if len(dt) >= 8:
            q = len(dt) // 4
            out.append(f"- {os.path.basename(f)}: {len(ts)} batches; " + " / ".join(f"{st.median(dt[i * q:(i + 1) * q]):.3f}" for i in range(4)))
    out.append("")

s = rows("soak.csv")
if s:
    out.append("## (e) Soak: pgbench on both sides, daemon running\n")
    out.append("| minute | side | pending delta rows | delta tables bytes | dead tuples | autovacuums | ledger bytes | conflicts | lag s | daemon RSS MiB |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    mins = sorted({int(r["minute"]) for r in s})
    keep = set(mins[:: max(1, len(mins) // 12)]) | {mins[-1], mins[-2] if len(mins) > 1 else mins[-1]}
    for r in s:
        if int(r["minute"]) in keep:
            rss = num(r["daemon_rss_kb"])
            out.append(f"| {r['minute']} | {r['side']} | {r['pending_rows']} | {int(num(r['delta_bytes'])):,} | {r['delta_dead_tup']} | {r['delta_autovacuums']} | {r['ledger_bytes']} | {r['conflicts']} | {r['lag_s']} | {rss / 1024 if rss else 0:.1f} |")
    for side in ("left", "right"):
        f = os.path.join(d, f"soak_lag_{side}.csv")
        if os.path.exists(f):
            v = [float(l.split(",")[1]) for l in open(f) if l.count(",") == 1]
            if v:
                out.append(f"\nLag on {side}, sampled every second over the soak (n={len(v)}): p50 {pct(v, .5):.3f} s, p99 {pct(v, .99):.3f} s, max {max(v):.3f} s.")
        g = [r for r in s if r["side"] == side]
        if len(g) > 4:
            by = [num(r["delta_bytes"]) for r in g]
            n = len(by)
            out.append(f"Delta tables on {side}: max over the first half {max(by[: n // 2]) / 1024:.0f} KiB, over the second half {max(by[n // 2:]) / 1024:.0f} KiB, at the end {by[-1] / 1024:.0f} KiB.")
    f = os.path.join(d, "rss_soak.csv")
    if os.path.exists(f):
        pts = [l.strip().split(",") for l in list(open(f))[1:] if l.strip()]
        rs = [int(r) for _, r, _ in pts]
        if rs:
            n = len(rs)
            out.append(f"\nDaemon RSS over the soak ({n} samples, every 5 s): first {rs[0] / 1024:.1f} MiB, max over the first half {max(rs[: n // 2]) / 1024:.1f}, over the second half {max(rs[n // 2:]) / 1024:.1f}, last {rs[-1] / 1024:.1f}; VmHWM {int(pts[-1][2]) / 1024:.1f} MiB.")
    f = os.path.join(d, "soak_end.txt")
    if os.path.exists(f):
        out.append("\n```\n" + open(f).read().strip() + "\n```")
print("\n".join(out))
