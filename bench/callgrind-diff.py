#!/usr/bin/env python3
"""Per-function instructions per request from two bench/callgrind.sh runs.

    bench/callgrind-diff.py OUT [ROLE] [--top N] [--vs OTHER_OUT]

OUT is a `bench/callgrind.sh --out OUT` folder: its runs a (few requests)
and b (many) are subtracted per function (exclusive instructions, from
`callgrind_annotate --inclusive=no`) and divided by the requests measured,
for the process of ROLE (default edge-front). With --vs, a second folder's
figures are shown beside, with the difference: an A/B of two builds.
"""
import re
import subprocess
import sys
from pathlib import Path


def per_function(run: Path, role: str) -> dict:
    roles = dict(l.split()[::-1] for l in (run / "roles").read_text().splitlines() if l.strip())
    pid = roles[role]
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", str(run / f"cg.{pid}")],
        capture_output=True, text=True, check=True).stdout
    funcs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if not m:
            continue
        name = m.group(2)
        if name.startswith("PROGRAM TOTALS") or "file:function" in name:
            continue
        name = re.sub(r"^[^:]*:", "", name, count=1) if not name.startswith("???") else name
        name = re.sub(r"\s*\[[^\]]*\]$", "", name)
        funcs[name] = funcs.get(name, 0) + int(m.group(1).replace(",", ""))
    return funcs


def requests(out: Path) -> int:
    # callgrind.sh: run A 200, run B 200 + N; N is in its summary only, so
    # read both counts from the folders' logs if present, else assume 3000.
    f = out / "requests"
    return int(f.read_text()) if f.exists() else 3000


def per_request(out: Path, role: str) -> dict:
    a, b = per_function(out / "a", role), per_function(out / "b", role)
    n = requests(out)
    return {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}


def main():
    args = sys.argv[1:]
    top = 40
    vs = None
    if "--top" in args:
        i = args.index("--top"); top = int(args[i + 1]); del args[i:i + 2]
    if "--vs" in args:
        i = args.index("--vs"); vs = Path(args[i + 1]); del args[i:i + 2]
    out = Path(args[0])
    role = args[1] if len(args) > 1 else "edge-front"
    x = per_request(out, role)
    if vs is None:
        total = sum(x.values())
        print(f"{role}: {total:,.0f} instructions per request")
        for k, v in sorted(x.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{v:9,.0f} {100 * v / total:5.1f}%  {k[:150]}")
        return
    y = per_request(vs, role)
    print(f"{role}: {sum(x.values()):,.0f} ({out}) against {sum(y.values()):,.0f} ({vs})")
    keys = set(x) | set(y)
    for k in sorted(keys, key=lambda k: -abs(y.get(k, 0) - x.get(k, 0)))[:top]:
        print(f"{x.get(k, 0):9,.0f} {y.get(k, 0):9,.0f} {y.get(k, 0) - x.get(k, 0):+9,.0f}  {k[:140]}")


if __name__ == "__main__":
    main()
