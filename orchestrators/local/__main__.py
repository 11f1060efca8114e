"""``python -m tfpipe.orchestrators.local --ir IR.json [--run-id RUN] [-q]``: run a compiled
IR with the local runner (what ``tfpipe reproduce`` starts in its fresh directory)."""
import argparse
import sys

from tfpipe.compiler import load_ir
from tfpipe.runtime import quiet_libraries

from .runner import LocalRunner


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tfpipe.orchestrators.local", description=__doc__)
    ap.add_argument("--ir", required=True, help="path of the compiled IR (JSON)")
    ap.add_argument("--run-id")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    quiet_libraries()
    res = LocalRunner(verbose=not a.quiet).run(load_ir(a.ir), run_id=a.run_id)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
