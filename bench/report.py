#!/usr/bin/env python3
"""Side-by-side markdown from several run.py JSON files (stdlib only).

  python3 report.py results-run1.json results-run2.json > tables.md

Prints, for every workload point and peer: each run's figure, its ratio to
the reference peer (c-epoll), and the run-to-run spread ((max-min)/mean).
"""

import json
import sys

import run


def fig(wl, r):
    if not r or r.get("na") or "cpu" not in r:
        return None
    if r.get("mismatches") or r.get("mismatch_bytes"):
        return None
    return run.headline(wl, r)[0]


def header(title, names, unit=True):
    """
    Print a table's title and its header rows (Markdown).
    """
    print(title)
    columns = ["workload", *(["unit"] if unit else []), *names]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def figures(runs, name, key, wl):
    """
    The headline figure of server C{name} for workload C{key} in each run
    that has one.
    """
    vals = [fig(wl, R["results"].get(name, {}).get(key)) for R in runs]
    return [v for v in vals if v is not None]


def main():
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    runs = []
    for p in paths:
        with open(p) as f:
            runs.append(json.load(f))
    ref = runs[0].get("reference") or run.REFERENCE
    names = list(runs[0]["results"].keys())
    keys = list(runs[0]["results"][names[0]].keys())
    wl_of = {k: runs[0]["results"][names[0]][k]["workload"] for k in keys}

    header(
        f"### Figures per run (ratio to {ref} in parentheses; † = other processes were busy)\n",
        names,
    )
    for k in keys:
        wl = wl_of[k]
        unit = run.headline(wl, {})[1]
        row = [k, unit]
        for n in names:
            cells = []
            for R in runs:
                r = R["results"].get(n, {}).get(k)
                rr = R["results"].get(ref, {}).get(k) if n != ref else None
                cells.append(run.cell(wl, r, rr))
            row.append(" / ".join(cells))
        print("| " + " | ".join(row) + " |")

    header(
        f"\n### Best of the runs (highest throughput; noise only ever lowers it), ratio to {ref}'s best\n",
        names,
    )
    for k in keys:
        wl = wl_of[k]
        unit, hib = run.headline(wl, {})[1:]
        if not hib:
            continue
        best = {}
        for n in names:
            vals = figures(runs, n, k, wl)
            best[n] = max(vals) if vals else None
        row = [k, unit]
        for n in names:
            v, rv = best[n], best.get(ref)
            if v is None:
                rs = [R["results"].get(n, {}).get(k) or {} for R in runs]
                row.append(
                    "n/a"
                    if any(r.get("na") for r in rs)
                    else "WRONG"
                    if any(r.get("mismatches") or r.get("mismatch_bytes") for r in rs)
                    else "-"
                )
                continue
            c = run.fmt_num(v, unit)
            if n != ref and rv:
                c += f" ({v / rv:.2f}x)"
            served = [
                R["results"].get(n, {}).get(k, {}).get("conns_never_served")
                for R in runs
            ]
            if any(served):
                c += " [1 conn served]" if wl == "tcp-pingpong" else ""
            row.append(c)
        print("| " + " | ".join(row) + " |")

    header("\n### Run-to-run spread, (max-min)/mean of the figure\n", names, unit=False)
    for k in keys:
        wl = wl_of[k]
        row = [k]
        for n in names:
            vals = figures(runs, n, k, wl)
            if len(vals) < 2 or not any(vals):
                row.append("-")
                continue
            m = sum(vals) / len(vals)
            row.append(f"{(max(vals) - min(vals)) / m:.0%}" if m else "-")
        print("| " + " | ".join(row) + " |")

    header(
        "\n### Server CPU per operation (us per request/datagram/connection; CPU-s per GB for streams),"
        f" ratio to {ref}\n",
        names,
    )
    for k in keys:
        wl = wl_of[k]
        if wl == "idle-conns":
            continue
        unit = "CPU-s/GB" if wl.startswith("tcp-stream") else "us/op"
        row = [k, unit]
        for n in names:
            cells = []
            for R in runs:
                r = R["results"].get(n, {}).get(k) or {}
                v, _ = run.server_cost(wl, r)
                rv, _ = run.server_cost(wl, R["results"].get(ref, {}).get(k) or {})
                if v is None:
                    cells.append(
                        "WRONG"
                        if (r.get("mismatches") or r.get("mismatch_bytes"))
                        else "-"
                    )
                    continue
                c = f"{v:.2f}" if unit == "CPU-s/GB" else f"{v:.1f}"
                if n != ref and rv:
                    c += f" ({v / rv:.1f}x)"
                cells.append(c)
            row.append(" / ".join(cells))
        print("| " + " | ".join(row) + " |")

    print("\n### Latency p50/p99 in microseconds (run 1 / run 2 ...)\n")
    print("| workload | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for k in keys:
        wl = wl_of[k]
        if wl not in ("tcp-pingpong", "udp-pingpong", "tcp-oneshot", "tcp-oneshot-rst"):
            continue
        row = [k]
        for n in names:
            cells = []
            for R in runs:
                r = R["results"].get(n, {}).get(k) or {}
                cells.append(
                    f"{r['p50_us']:.0f}/{r['p99_us']:.0f}"
                    if r.get("p50_us", -1) >= 0
                    else "-"
                )
            row.append(" ; ".join(cells))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
