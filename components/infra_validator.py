"""InfraValidator: can the candidate model be loaded and served by a fresh process?

The SavedModel is loaded in a SEPARATE process (the runtime's Python, like a model
server would), timed, and sent a few requests built from an Examples split (serialized
raw tf.Examples, the serving signature's input). The responses are checked: the
``outputs`` tensor has one row per request, every value is finite and, for a classifier
(more than one column), every row of probabilities sums to 1. Output: an InfraBlessing
(``blessed``, ``reasons``; ``load_time_s`` as a custom property and in
``infra_validation.json``; TFX's ``INFRA_BLESSED`` / ``INFRA_NOT_BLESSED`` marker file).

No TF Serving binary exists here; docs/evaluator_pusher.md shows how the same check runs
against a ``tensorflow/serving`` container in Kubernetes.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

from tfpipe import Examples, InfraBlessing, Input, Model, Output, component, current

__all__ = ["InfraValidator", "InfraValidatorError", "check_response"]


class InfraValidatorError(ValueError):
    """The InfraValidator was configured wrongly (a model that fails to serve is not an
    error: it is recorded as not infra-blessed)."""



def check_response(report: dict, n_requests: int, problem: str = "auto", output_key: str = "outputs",
                   tolerance: float = 1e-3) -> list[str]:
    """What is wrong with a probe report (an empty list when nothing is)."""
    if report.get("error"):
        return [report["error"]]
    outs = report.get("outputs") or {}
    if output_key not in outs:
        return [f"the response has no {output_key!r} output; it has {sorted(outs)}"]
    o = outs[output_key]
    reasons = []
    shape = o["shape"]
    if len(shape) != 2 or shape[0] != n_requests:
        reasons.append(f"{output_key} has shape {shape}; expected [{n_requests}, k] for {n_requests} requests")
    values = o.get("values")
    if values is None:
        return reasons + [f"{output_key} has dtype {o['dtype']}; expected floating point"]
    bad = [i for i, row in enumerate(values) for v in (row if isinstance(row, list) else [row])
           if not math.isfinite(v)]
    if bad:
        reasons.append(f"{output_key} holds non-finite values in rows {sorted(set(bad))[:5]}")
    classification = problem == "classification" or (problem == "auto" and len(shape) == 2 and shape[1] > 1)
    if classification and not bad:
        sums = [sum(row) for row in values]
        off = [(i, s) for i, s in enumerate(sums) if abs(s - 1.0) > tolerance]
        if off:
            reasons.append(f"class probabilities do not sum to 1 (row {off[0][0]} sums to {off[0][1]:.4f}; "
                           f"{len(off)} of {len(sums)} rows off by more than {tolerance})")
    return reasons


@component(name="InfraValidator")
def InfraValidator(model: Input[Model], examples: Input[Examples], blessing: Output[InfraBlessing],
                   request_split: str = "eval", num_examples: int = 8, drop_columns: list = (),
                   problem: str = "auto", signature_name: str = "serving_default",
                   timeout_s: float = 300.0) -> None:
    """Load ``model`` in a separate process, send ``num_examples`` requests from
    ``request_split`` (without ``drop_columns``, e.g. the label), check the responses."""
    if problem not in ("auto", "classification", "regression"):
        raise InfraValidatorError(f"InfraValidator: problem={problem!r}; expected 'auto', 'classification' "
                                  f"or 'regression'")
    ctx = current()
    from ._infra_probe import write_requests
    from .examples_io import serialized_examples

    records = serialized_examples(examples, request_split, limit=num_examples, drop_columns=list(drop_columns))
    req = os.path.join(ctx.tmp_dir or tempfile.mkdtemp(prefix="tfpipe-infra-"), "requests.bin")
    write_requests(req, records)  # no TensorFlow in this process: only the server process loads it
    model_dir = model.saved_model_dir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ctx.log(f"loading Model #{model.id} in a separate process, {len(records)} request(s) from {request_split}")
    t0 = time.monotonic()
    report: dict = {}
    try:
        p = subprocess.run([sys.executable, "-m", "tfpipe.components._infra_probe", model_dir, req, signature_name],
                           capture_output=True, text=True, timeout=timeout_s, env=env)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
            reasons = [f"the model server process exited {p.returncode} while loading {model_dir}: {tail}"]
        else:
            report = json.loads(lines[-1])
            reasons = check_response(report, len(records), problem)
    except subprocess.TimeoutExpired:
        reasons = [f"the model did not load and answer within {timeout_s:g} s"]
    wall = time.monotonic() - t0
    blessed = not reasons
    load_s = report.get("load_s")
    summary = {"blessed": blessed, "reasons": reasons, "load_time_s": load_s, "process_wall_s": wall,
               "requests": len(records), "report": {k: v for k, v in report.items() if k != "outputs"},
               "output_shapes": {k: v["shape"] for k, v in (report.get("outputs") or {}).items()}}
    os.makedirs(blessing.uri, exist_ok=True)
    with open(os.path.join(blessing.uri, "infra_validation.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(blessing.uri, "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED"), "w") as f:
        f.write("\n".join(reasons))
    blessing.blessed = blessed
    blessing.reasons = reasons or [f"loaded in {load_s:.2f} s in a separate process; {len(records)} "
                                   f"request(s) answered with well-formed outputs"]
    if load_s is not None:
        blessing.custom["load_time_s"] = float(load_s)
    ctx.log(("INFRA BLESSED: " if blessed else "INFRA NOT BLESSED: ") + "; ".join(blessing.reasons))
