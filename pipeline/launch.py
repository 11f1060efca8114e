"""Entry point for a remote task: ``python -m pipeline.launch --ir IR --node N --run RUN``.

Airflow tasks and KFP containers call this; it enters the same launcher as the local
runner. Exit 0 on success (or cache hit), 1 when the node failed.
"""
from __future__ import annotations

import argparse
import sys

from .compiler import load_ir
from .launcher import NodeFailed, run_node


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.launch")
    ap.add_argument("--ir", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--no-cache", action="store_true")
    a = ap.parse_args(argv)
    ir = load_ir(a.ir)
    try:
        r = run_node(ir, a.node, a.run, enable_cache=False if a.no_cache else None)
    except NodeFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.node}: {r.state} in {r.duration_s:.2f}s (execution {r.execution_id})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
