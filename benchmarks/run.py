"""`make bench`: every benchmark module's figures, printed as a table with ratios against
a baseline measured in the same run (never asserted in tests).

Each ``benchmarks/bench_*.py`` exposes ``run(report)``; ``report(name, value, unit,
note="")`` records one figure. Select with ``python -m benchmarks.run [NAME ...]``.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import traceback

ROWS: list[tuple[str, str, float, str, str]] = []


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    here = os.path.dirname(__file__)
    mods = sorted(m.name for m in pkgutil.iter_modules([here]) if m.name.startswith("bench_"))
    if argv:
        mods = [m for m in mods if any(a in m for a in argv)]
    failed = 0
    for m in mods:
        print(f"== {m}", flush=True)
        t0 = time.monotonic()

        def report(name, value, unit, note="", _m=m):
            ROWS.append((_m, name, float(value), unit, note))
            print(f"   {name}: {value:,.3f} {unit} {note}", flush=True)
        try:
            importlib.import_module(f"benchmarks.{m}").run(report)
        except Exception:
            failed += 1
            traceback.print_exc()
        print(f"   ({m} took {time.monotonic() - t0:.0f}s)", flush=True)
    print("\nSUMMARY")
    w = max((len(r[1]) for r in ROWS), default=10)
    for mod, name, value, unit, note in ROWS:
        print(f"{mod:<22} {name:<{w}} {value:>12,.3f} {unit:<6} {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
