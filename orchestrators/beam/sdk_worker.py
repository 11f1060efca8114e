"""One SDK worker process of the local Beam cluster (``cluster.py``): Beam's SDK harness
connected to the job's control endpoint, recording each bundle it processes as a line
``pid worker_id control_endpoint instruction_id`` in the pool's bundles log (what shows
which worker processes did the work, and for which job: each job has a control endpoint
of its own)."""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfpipe.orchestrators.beam.sdk_worker")
    parser.add_argument("--control", required=True, help="the job's control endpoint (HOST:PORT)")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--bundles-log", required=True)
    a = parser.parse_args(argv)

    from tfpipe.runtime import quiet_libraries
    quiet_libraries()
    from apache_beam.runners.worker.sdk_worker import SdkHarness

    pid = os.getpid()

    class RecordingHarness(SdkHarness):
        def _request_process_bundle(self, request):
            with open(a.bundles_log, "a") as f:  # one short line, appended: lines never interleave
                f.write(f"{pid} {a.worker_id} {a.control} {request.instruction_id}\n")
            return super()._request_process_bundle(request)

    RecordingHarness(a.control, worker_id=a.worker_id).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
