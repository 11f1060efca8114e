"""A Tuner worker process: ``python -m tfpipe.components._tuner_worker SPEC_JSON``.

Builds the tuner from the user's ``tuner_fn`` like the Tuner does; KerasTuner's
``KERASTUNER_*`` environment (set by the Tuner) makes it take trials from, and report
results to, the oracle the Tuner serves on 127.0.0.1.
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from tfpipe.runtime import pin_keras
    pin_keras()  # inherited from the Tuner's process; set here too for a worker started otherwise
    from ._user_code import describe, load_user_fn
    from .fn_args import DataAccessor, FnArgs
    from .tuner import run_tuner_fn
    spec = json.loads(argv[0])
    fn = load_user_fn("Tuner", "tuner_fn", spec["module_file"], spec["ref"])
    fn_args = FnArgs(**spec["fn_args"], data_accessor=DataAccessor())
    tuner, fit_kwargs = run_tuner_fn(fn, describe(spec["module_file"], spec["ref"], "tuner_fn"), fn_args)
    from ._autograph import libraries_not_autographed
    with libraries_not_autographed():  # as in the Tuner's own process
        tuner.search(**fit_kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
