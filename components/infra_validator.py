"""InfraValidator: can the candidate model be loaded and served by the model server?

The candidate SavedModel is served by tfpipe's own model server (``tfpipe.serving``, the
server ``tfpipe serve`` runs) in a SEPARATE process on a free loopback port: the load is
timed, a few requests built from an Examples split (serialized raw tf.Examples, sent as
TF Serving REST ``{"b64": ...}`` instances to ``:predict``) are answered, and the server is
stopped gracefully. The responses are checked: the ``outputs`` tensor has one row per
request, every value is finite and, for a classifier (more than one column), every row of
probabilities sums to 1. Output: an InfraBlessing (``blessed``, ``reasons``; ``load_time_s``
as a custom property and in ``infra_validation.json``; TFX's ``INFRA_BLESSED`` /
``INFRA_NOT_BLESSED`` marker file).

docs/evaluator_pusher.md shows how the same check runs against a ``tensorflow/serving``
container in Kubernetes.
"""
from __future__ import annotations

import base64
import json
import math
import os
import sys
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


def _outputs(predictions: list) -> dict:
    """The REST predictions as the report ``check_response`` reads (one output, ``outputs``)."""
    if predictions and isinstance(predictions[0], dict):
        return {k: _tensor([p[k] for p in predictions]) for k in predictions[0]}
    return {"outputs": _tensor(predictions)}


def _tensor(rows: list) -> dict:
    shape = [len(rows)] + ([len(rows[0])] if rows and isinstance(rows[0], list) else [])
    floats = all(isinstance(v, (int, float)) for r in rows for v in (r if isinstance(r, list) else [r]))
    return {"shape": shape, "dtype": "float32" if floats else "object", "values": rows if floats else None}


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
    from tfpipe.serving.client import ServerProcess, ServerStartError

    from .examples_io import serialized_examples

    records = serialized_examples(examples, request_split, limit=num_examples, drop_columns=list(drop_columns))
    model_dir = model.saved_model_dir()
    ctx.log(f"serving Model #{model.id} with tfpipe's model server in a separate process, "
            f"{len(records)} request(s) from {request_split}")
    t0 = time.monotonic()
    report: dict = {}
    server = None
    try:
        server = ServerProcess.start(["--model-dir", model_dir, "--model-name", "candidate", "--poll", "0"],
                                     command=[sys.executable, "-m", "tfpipe.serving"], timeout_s=timeout_s)
        report["load_s"] = server.info["models"]["candidate"]["load_s"]["1"]
        body = {"signature_name": signature_name,
                "instances": [{"b64": base64.b64encode(r).decode()} for r in records]}
        t1 = time.monotonic()
        status, resp = server.request("POST", "/v1/models/candidate:predict", body, timeout=timeout_s)
        report["predict_s"] = time.monotonic() - t1
        if status != 200:
            report["error"] = f"the model server answered HTTP {status}: {resp.get('error', resp)}"
        else:
            report["outputs"] = _outputs(resp["predictions"])
        reasons = check_response(report, len(records), problem)
    except ServerStartError as e:
        reasons = [f"the model server process exited {e.returncode} while loading {model_dir}: {e.stderr}"
                   if e.returncode is not None else f"the model did not load and answer within {timeout_s:g} s"]
    except OSError as e:  # the connection failed or timed out
        reasons = [f"the model server did not answer: {e}"]
    finally:
        if server is not None:
            code = server.stop()
            if code != 0 and not report.get("error"):
                report["shutdown"] = f"the server exited {code} on SIGTERM"
    wall = time.monotonic() - t0
    blessed = not reasons
    load_s = report.get("load_s")
    if blessed and report.get("shutdown"):
        reasons, blessed = [report["shutdown"] + "; expected a graceful stop (exit 0)"], False
    summary = {"blessed": blessed, "reasons": reasons, "load_time_s": load_s, "process_wall_s": wall,
               "requests": len(records), "report": {k: v for k, v in report.items() if k != "outputs"},
               "output_shapes": {k: v["shape"] for k, v in (report.get("outputs") or {}).items()}}
    os.makedirs(blessing.uri, exist_ok=True)
    with open(os.path.join(blessing.uri, "infra_validation.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(blessing.uri, "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED"), "w") as f:
        f.write("\n".join(reasons))
    blessing.blessed = blessed
    blessing.reasons = reasons or [f"loaded in {load_s:.2f} s by the model server in a separate process; "
                                   f"{len(records)} request(s) answered with well-formed outputs; stopped "
                                   f"gracefully"]
    if load_s is not None:
        blessing.custom["load_time_s"] = float(load_s)
    ctx.log(("INFRA BLESSED: " if blessed else "INFRA NOT BLESSED: ") + "; ".join(blessing.reasons))
