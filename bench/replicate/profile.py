#!/usr/bin/env python3
"""Sum server-side statement durations of a pgduplex drain (log_min_duration_statement = 0).

stdin: server log lines prefixed by "left " / "right "; argv[1]: the drain's
"wall apply user sys maxrss rc". Groups by side and a normalised statement prefix."""
import re
import sys
from collections import defaultdict

tot = defaultdict(lambda: [0.0, 0])
cur = None
pat = re.compile(r"^(left|right) .*?LOG:  duration: ([0-9.]+) ms  (?:statement|execute [^:]*|parse [^:]*|bind [^:]*):?\s?(.*)$")
for line in sys.stdin:
    m = pat.match(line.rstrip("\n"))
    if not m:
        continue
    side, ms, sql = m.group(1), float(m.group(2)), m.group(3)
    phase = "parse" if " parse " in line else "bind" if " bind " in line else "exec"
    sql = re.sub(r"\s+", " ", sql)
    sql = re.sub(r"pgduplex_[a-z]+_[0-9a-f_]+", "pgduplex_tmp", sql)
    sql = re.sub(r"\b\d+\b", "N", sql)
    key = (side, phase, sql[:110])
    tot[key][0] += ms
    tot[key][1] += 1
wall = sys.argv[1].split()[0] if len(sys.argv) > 1 else "?"
print(f"drain: {sys.argv[1] if len(sys.argv) > 1 else ''} (wall apply user sys maxrss rc)")
for side in ("left", "right"):
    s = sum(v[0] for k, v in tot.items() if k[0] == side)
    print(f"{side}: server statement time {s / 1000:.2f} s over {sum(v[1] for k, v in tot.items() if k[0] == side)} messages (drain wall {wall} s)")
print("\nms total | count | side | phase | statement")
for k, v in sorted(tot.items(), key=lambda kv: -kv[1][0])[:30]:
    print(f"{v[0]:9.1f} | {v[1]:5d} | {k[0]:5s} | {k[1]:5s} | {k[2]}")
