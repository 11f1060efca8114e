"""InfraValidator: can the candidate model be loaded and served by the model server?

As TFX's InfraValidator does: the candidate SavedModel is loaded by a model server and
must answer its serving signature on real examples. Here the server is tfpipe's own
(``tfpipe.serving``, the server ``tfpipe serve`` runs), in a SEPARATE process on a free
loopback port: the load is timed, ``num_examples`` requests built from an Examples split
(serialized raw tf.Examples, sent as TF Serving REST ``{"b64": ...}`` instances to
``:predict``) must be answered (HTTP 200, one prediction per request), and the server
must stop gracefully. What the model answers is not judged by default (a model emitting
logits, as TFX's penguin model does, is infra-blessed); ``check_probabilities=True``
adds a check of the ``outputs`` tensor: one row per request, finite values in [0, 1],
and rows that sum to 1 when there is more than one column (softmax; one column is a
sigmoid's probability of the positive class). Output: an InfraBlessing (``blessed``,
``reasons``; ``load_time_s`` as a custom property and in ``infra_validation.json``; TFX's
``INFRA_BLESSED`` / ``INFRA_NOT_BLESSED`` marker file).

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


def check_response(report: dict, n_requests: int, check_probabilities: bool = False,
                   output_key: str = "outputs", tolerance: float = 1e-3) -> list[str]:
    """What is wrong with a probe report (an empty list when nothing is): the server must
    have answered every request; with ``check_probabilities`` the ``output_key`` tensor
    must hold one row of probabilities per request."""
    if report.get("error"):
        return [report["error"]]
    outs = report.get("outputs") or {}
    answered = {k: o["shape"][0] if o["shape"] else None for k, o in outs.items()}
    short = {k: n for k, n in answered.items() if n != n_requests}
    if not outs or short:
        return [f"the server answered {n_requests} request(s) with {answered or 'no outputs'}; expected one "
                f"prediction per request"]
    if not check_probabilities:
        return []
    if output_key not in outs:
        return [f"the response has no {output_key!r} output; it has {sorted(outs)}"]
    o = outs[output_key]
    shape = o["shape"]
    if len(shape) != 2:
        return [f"{output_key} has shape {shape}; expected [{n_requests}, k] class probabilities "
                f"(k = 1 for a sigmoid)"]
    values = o.get("values")
    if values is None:
        return [f"{output_key} has dtype {o['dtype']}; expected floating point probabilities"]
    bad = sorted({i for i, row in enumerate(values) for v in row if not math.isfinite(v)})
    if bad:
        return [f"{output_key} holds non-finite values in rows {bad[:5]}"]
    reasons = []
    out_of_range = [(i, v) for i, row in enumerate(values) for v in row if not -tolerance <= v <= 1 + tolerance]
    if out_of_range:
        i, v = out_of_range[0]
        reasons.append(f"{output_key} holds values outside [0, 1], so not probabilities (row {i} has {v:.4f}; "
                       f"a model that returns logits passes with check_probabilities=False)")
    if shape[1] > 1:
        off = [(i, sum(row)) for i, row in enumerate(values) if abs(sum(row) - 1.0) > tolerance]
        if off:
            reasons.append(f"class probabilities do not sum to 1 (row {off[0][0]} sums to {off[0][1]:.4f}; "
                           f"{len(off)} of {len(values)} rows off by more than {tolerance})")
    return reasons


def _outputs(predictions: list) -> dict:
    """The REST predictions as the report ``check_response`` reads (one output, ``outputs``)."""
    if predictions and isinstance(predictions[0], dict):
        return {k: _tensor([p[k] for p in predictions]) for k in predictions[0]}
    return {"outputs": _tensor(predictions)}


def _tensor(rows: list) -> dict:
    shape = [len(rows)] + ([len(rows[0])] if rows and isinstance(rows[0], list) else [])
    if len(shape) == 1:  # one value per row, e.g. a scalar regression output
        rows = [[v] for v in rows]
        shape.append(1)
    floats = all(isinstance(v, (int, float)) for r in rows for v in (r if isinstance(r, list) else [r]))
    return {"shape": shape, "dtype": "float32" if floats else "object", "values": rows if floats else None}


@component(name="InfraValidator")
def InfraValidator(model: Input[Model], examples: Input[Examples], blessing: Output[InfraBlessing],
                   request_split: str = "eval", num_examples: int = 8, drop_columns: list = (),
                   check_probabilities: bool = False, signature_name: str = "serving_default",
                   timeout_s: float = 300.0) -> None:
    """Load ``model`` in a separate process, send ``num_examples`` requests from
    ``request_split`` (without ``drop_columns``, e.g. the label): every one must be
    answered; ``check_probabilities`` also checks the ``outputs`` are class probabilities."""
    if num_examples < 1:
        raise InfraValidatorError(f"InfraValidator: num_examples={num_examples}; expected 1 or more")
    ctx = current()
    from tfpipe.serving.client import ServerProcess, ServerStartError

    from .examples_io import serialized_examples

    if request_split not in (examples.split_names or []):
        raise InfraValidatorError(f"InfraValidator: request_split {request_split!r} is not a split of Examples "
                                  f"#{examples.id}; splits: {examples.split_names}")
    records = serialized_examples(examples, request_split, limit=num_examples, drop_columns=list(drop_columns))
    if not records:
        raise InfraValidatorError(f"InfraValidator: split {request_split!r} of Examples #{examples.id} has no "
                                  f"rows to send")
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
        reasons = check_response(report, len(records), check_probabilities)
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
                                   f"{len(records)} request(s) answered"
                                   + (" with class probabilities" if check_probabilities else "")
                                   + "; stopped gracefully"]
    if load_s is not None:
        blessing.custom["load_time_s"] = float(load_s)
    ctx.log(("INFRA BLESSED: " if blessed else "INFRA NOT BLESSED: ") + "; ".join(blessing.reasons))
