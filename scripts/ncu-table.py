#!/usr/bin/env python3
"""Sums an Nsight Compute raw CSV (ncu --csv --page raw) by kernel: launches, time, share,
DRAM GB/s, and the mean of any percentage metrics present. Usage: ncu-table.py FILE TITLE"""
import collections
import csv
import re
import sys

rows = [l for l in open(sys.argv[1], errors="replace") if l.startswith('"')]
if not rows:
    print(f"\n(no ncu rows in {sys.argv[1]})")
    sys.exit(0)
r = list(csv.reader(rows))
head = r[0]
ki = head.index("Kernel Name")
ti = head.index("gpu__time_duration.sum")
bi, wi = head.index("dram__bytes_read.sum"), head.index("dram__bytes_write.sum")
pcts = [i for i, h in enumerate(head)
        if h in ("sm__warps_active.avg.pct_of_peak_sustained_active",
                 "sm__throughput.avg.pct_of_peak_sustained_elapsed")]
# Shared-memory load bank conflicts, as extra wavefronts per shared load wavefront (0: none).
bci = head.index("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum") \
    if "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum" in head else None
lwi = head.index("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum") \
    if "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum" in head else None


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return 0.0


units = r[1] if len(r) > 1 and not r[1][ti].replace(",", "").replace(".", "").isdigit() else None
scale_t = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(units[ti] if units else "nsecond", 1e-3)
scale = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}
sb = scale.get(units[bi] if units else "byte", 1.0)
sw = scale.get(units[wi] if units else "byte", 1.0)
agg = collections.OrderedDict()
for row in r[2 if units else 1:]:
    name = re.sub(r"[(].*", "", row[ki]).strip()
    name = re.sub(r"^void ", "", name)
    name = name[:60]
    a = agg.setdefault(name, [0, 0.0, 0.0, [0.0] * len(pcts), 0.0, 0.0])
    t = num(row[ti]) * scale_t
    a[0] += 1
    a[1] += t
    a[2] += num(row[bi]) * sb + num(row[wi]) * sw
    for j, i in enumerate(pcts):
        a[3][j] += num(row[i]) * t  # time-weighted
    if bci is not None and lwi is not None:
        a[4] += num(row[bci])
        a[5] += num(row[lwi])
tot = sum(a[1] for a in agg.values())
ph = "".join(f" {head[i].split('.')[0]} % |" for i in pcts)
bank = bci is not None and lwi is not None
if bank:
    ph += " shared-load bank conflicts / wavefronts |"
    pcts_n = len(pcts) + 1
else:
    pcts_n = len(pcts)
print(f"\n| kernel ({sys.argv[2]}) | launches | time us | us/launch | share | DRAM GB/s |{ph}")
print("|---|---|---|---|---|---|" + "---|" * pcts_n)
for n, a in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    pv = "".join(f" {a[3][j] / a[1]:.0f} |" if a[1] else " - |" for j in range(len(pcts)))
    if bank:
        pv += f" {a[4] / a[5]:.2f} |" if a[5] else " - |"
    gbs = a[2] / a[1] / 1e3 if a[1] else 0
    print(f"| {n} | {a[0]} | {a[1]:.0f} | {a[1] / a[0]:.1f} | {100 * a[1] / tot:.0f}% | {gbs:.0f} |{pv}")
print(f"| total | {sum(a[0] for a in agg.values())} | {tot:.0f} | | | |" + " |" * pcts_n)
