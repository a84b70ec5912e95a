"""One side-by-side table from one or more bench/out/latest.json files (the
format of issue 20's table: a row per scenario, a column per server, edge's
ratios last). Used by the offline kit's run.sh after its passes:

    python3 -m edgebench.summary run1.json [run2.json ...]

Standard library only; prints Markdown to stdout.
"""

import json
import re
import statistics
import sys

# Columns, in this order, when a run has them. "nginx" holds the static arm
# ("nginx") or, for an app scenario, "nginx return 200" (marked so).
COLUMNS = [
    ("edge", ["edge"]),
    ("granian", ["granian"]),
    ("uvicorn", ["uvicorn"]),
    ("nginx", ["nginx", "nginx return 200"]),
    ("nginx→gunicorn", ["nginx→gunicorn", "nginx→gunicorn-uvicorn"]),
]


def med(runs, key):
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def rows(data):
    """(scenario label, {column: (rps, p99_us, arm)}) for each scenario."""
    titles = {s["name"]: s for s in data.get("scenarios", [])}
    out = []
    for name, arms in data["results"].items():
        cells = {}
        for col, names in COLUMNS:
            for arm in names:
                runs = arms.get(arm) or []
                rps = med(runs, "rps")
                if rps:
                    cells[col] = (rps, med(runs, "p99_us"), arm)
                    break
        if cells:
            sc = titles.get(name, {})
            out.append((f"{name}: {sc['title']}" if sc.get("title") else name, cells))
    return out


def table(paths):
    datas = [json.load(open(p)) for p in paths]
    all_rows = [r for d in datas for r in rows(d)]
    # hello-1w, hello-2w ... together, by worker count, in first-seen order
    # of their families.
    def family(label):
        name = label.split(":")[0]
        m = re.match(r"^(.*?)-(\d+)w$", name)
        return (m.group(1), int(m.group(2))) if m else (name, 0)
    first = {}
    for label, _ in all_rows:
        first.setdefault(family(label)[0], len(first))
    all_rows.sort(key=lambda r: (first[family(r[0])[0]], family(r[0])[1]))
    used = [c for c, _ in COLUMNS if any(c in cells for _, cells in all_rows)]
    head = ["scenario"] + used + ["edge ratio", "p99 ms edge / granian"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|" + "---:|" * len(used) + "---|---|"]
    for label, cells in all_rows:
        row = [label]
        for c in used:
            if c not in cells:
                row.append("")
                continue
            rps, _, arm = cells[c]
            row.append(("return 200: " if arm == "nginx return 200" else "") + f"{rps:,.0f}")
        ratios = []
        if "edge" in cells:
            e = cells["edge"][0]
            for c in used:
                if c != "edge" and c in cells:
                    what = "nginx return 200" if cells[c][2] == "nginx return 200" else c
                    ratios.append(f"{e / cells[c][0]:.2f}× {what}")
        row.append(", ".join(ratios))
        p99 = [f"{cells[c][1] / 1000:.2f}" if c in cells and cells[c][1] else "—"
               for c in ("edge", "granian")]
        row.append(" / ".join(p99) if "granian" in cells else "")
        lines.append("| " + " | ".join(row) + " |")
    # Scaling: a family measured at several worker counts, per column.
    fams = {}
    for label, cells in all_rows:
        f, n = family(label)
        if n:
            fams.setdefault(f, []).append((n, cells))
    for f, runs in fams.items():
        if len(runs) < 2:
            continue
        parts = []
        for c in ("edge", "granian"):
            pts = [(n, cells[c][0]) for n, cells in runs if c in cells]
            if len(pts) > 1:
                steps = ", ".join(f"{a}→{b}: {rb / ra:.2f}×"
                                  for (a, ra), (b, rb) in zip(pts, pts[1:]))
                parts.append(f"{c} {steps}")
        if parts:
            lines.append("")
            lines.append(f"- scaling of {f} with the worker count (req/s ratio): "
                         + "; ".join(parts) + ".")
    head_lines = []
    for p, d in zip(paths, datas):
        cpus = d.get("cpus") or {}
        a = d.get("args") or {}
        head_lines.append(
            f"- {p}: {d.get('machine', '?')}; servers on CPUs {cpus.get('server', '?')}, "
            f"wrk on CPUs {cpus.get('load', '?')} (`wrk -t{cpus.get('wrk_threads', '?')} "
            f"-c{cpus.get('connections', '?')}`), workers {a.get('workers') or 'per scenario'}, "
            f"{a.get('rounds')} round(s) × {a.get('duration')} s, median req/s")
    return "\n".join(head_lines + [""] + lines) + "\n"


def main(argv):
    if not argv:
        sys.exit(__doc__)
    print(table(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
