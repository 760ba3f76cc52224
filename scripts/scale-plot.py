#!/usr/bin/env python3
"""Plot scripts/bench-scale.sh's table as a small SVG: the ratio to plain
Caddy against N (distinct sessions), one line per store: throughput (solid)
and, when the table has it, CPU per request (dotted).

usage: scale-plot.py SCALE_TSV OUT_SVG [BEFORE_TSV]
BEFORE_TSV, if given, is drawn dashed (the same rows measured on earlier code).
"""
import csv
import sys

COLORS = {"cookie": "#1f77b4", "memory": "#2ca02c", "redis": "#d62728"}
W, H, L, R, T, B = 480, 300, 50, 110, 20, 40


def rows(path, column="ratio"):
    with open(path) as f:
        out = {}
        for r in csv.DictReader(f, delimiter="\t"):
            if r.get(column):
                out.setdefault(r["store"], []).append((int(r["N"]), float(r[column])))
        return out


def main():
    now = rows(sys.argv[1])
    cpu = rows(sys.argv[1], "cpu_ratio")
    before = rows(sys.argv[3]) if len(sys.argv) > 3 else {}
    ns = sorted({n for d in (now, cpu, before) for pts in d.values() for n, _ in pts})
    ymax = max([1.2] + [y for d in (now, cpu, before) for pts in d.values() for _, y in pts])

    def x(n):
        return L + (W - L - R) * (ns.index(n) / max(1, len(ns) - 1))

    def y(v):
        return T + (H - T - B) * (1 - v / ymax)

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
    for v in [0, 0.25, 0.5, 0.75, 1.0]:
        s.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W - R}" y2="{y(v):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}x</text>')
    for n in ns:
        s.append(f'<text x="{x(n):.1f}" y="{H - B + 16}" text-anchor="middle">{n:,}</text>')
    s.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">N distinct sessions</text>')
    s.append(f'<text x="12" y="{(T + H - B) / 2}" transform="rotate(-90 12 {(T + H - B) / 2})" text-anchor="middle">÷ plain Caddy: req/s (solid), CPU/req (dotted)</text>')
    legend = 0
    for data, dash, label in ((before, ' stroke-dasharray="4 3"', " (before)"),
                              (cpu, ' stroke-dasharray="1 3"', " CPU"), (now, "", "")):
        for store, pts in sorted(data.items()):
            pts.sort()
            c = COLORS.get(store, "black")
            path = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in pts)
            s.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
            for n, v in pts:
                s.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{c}"/>')
            ly = T + 10 + 16 * legend
            s.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>')
            s.append(f'<text x="{W - R + 34}" y="{ly + 4}">{store}{label}</text>')
            legend += 1
    s.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(s) + "\n")


main()
