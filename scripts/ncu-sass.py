#!/usr/bin/env python3
"""Where one kernel launch spends its instructions and stalls, from Nsight Compute's source page
(ncu -i REPORT --page source --csv --print-source sass > FILE). Prints the warp instructions
executed, the stall reasons by samples, the opcode mix, and the instructions grouped by how often
they ran (a loop body runs as often as its trip count, so each group is one loop level).

Usage: ncu-sass.py FILE [TITLE]"""
import collections
import csv
import sys


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return 0.0


rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hi = next((i for i, r in enumerate(rows) if "Instructions Executed" in r), None)
if hi is None:
    print(f"\n(no SASS rows in {sys.argv[1]})")
    sys.exit(0)
head, data = rows[hi], rows[hi + 1:]
src, ie = head.index("Source"), head.index("Instructions Executed")
stalls = [i for i, h in enumerate(head) if h.startswith("stall_") and "Not Issued" not in h]
title = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]
total = sum(num(r[ie]) for r in data)
print(f"\n{title}: {total:,.0f} warp instructions executed, {len(data)} SASS instructions")

st = collections.Counter()
for r in data:
    for i in stalls:
        st[head[i]] += num(r[i])
ns = sum(st.values()) or 1
print("\n| stall reason | samples | share |\n|---|---|---|")
for k, v in st.most_common(8):
    print(f"| {k[6:]} | {v:.0f} | {100 * v / ns:.0f}% |")

ops = collections.Counter()
for r in data:
    words = r[src].split()
    if not words:
        continue
    op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
    ops[op.split(".")[0]] += num(r[ie])
print("\n| opcode | share of executed |\n|---|---|")
for k, v in ops.most_common(12):
    print(f"| {k} | {100 * v / total:.1f}% |")

groups = collections.defaultdict(lambda: [0, 0.0])
for r in data:
    n = num(r[ie])
    if n:
        groups[n][0] += 1
        groups[n][1] += n
print("\n| times run | instructions | share of executed |\n|---|---|---|")
for n, (k, t) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:8]:
    print(f"| {n:,.0f} | {k} | {100 * t / total:.1f}% |")
