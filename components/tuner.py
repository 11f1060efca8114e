"""Tuner: KerasTuner search over the user's ``tuner_fn(fn_args) -> TunerFnResult``.

Outputs ``best_hyperparameters`` (``best_hyperparameters.txt``: JSON of the best trial's
hyperparameter values, which the Trainer hands to ``run_fn`` as ``fn_args.hyperparameters``;
``best_hyperparameters_config.json``: the full ``keras_tuner.HyperParameters`` config) and
``trials.json`` (every trial: id, status, hyperparameter values, score).

``parallel_trials > 1`` runs trials in that many worker processes with KerasTuner's
distributed mode: this process builds the tuner from ``tuner_fn`` and serves its oracle
over gRPC on 127.0.0.1 (an ephemeral port); each worker runs ``tuner_fn`` too, with
``KERASTUNER_TUNER_ID`` / ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` set, so its
tuner asks the oracle for trials and reports results back. The oracle decides the search
as in a serial run (``max_trials`` counts over all workers).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

from tfpipe import (
    Examples,
    HyperParameters,
    Input,
    ModuleFile,
    Output,
    Schema,
    TransformGraph,
    component,
    current,
)

from ._user_code import call_user_fn, check_static, compile_check, describe, load_user_fn
from .fn_args import TunerFnResult

__all__ = ["Tuner", "TunerFnResult", "TunerError", "run_tuner_fn"]


class TunerError(RuntimeError):
    pass


def _driver(params: dict) -> dict:
    check_static("Tuner", "tuner_fn", params.get("module_file") or "", params.get("tuner_fn") or "")
    if params.get("parallel_trials", 1) < 1:
        raise TunerError(f"Tuner: parallel_trials={params['parallel_trials']}; expected 1 or more")
    out = {}
    ref = params.get("tuner_fn")
    if ref:
        from tfpipe.fingerprint import module_fingerprint

        from ._user_code import resolve_source
        out["tuner_fn_fingerprint"] = module_fingerprint(resolve_source(ref))
    return out


def run_tuner_fn(fn, what: str, fn_args):
    """Call ``tuner_fn`` and check it returned a tuner and fit kwargs."""
    res = call_user_fn("Tuner", fn, what, fn_args)
    tuner = getattr(res, "tuner", None)
    fit_kwargs = getattr(res, "fit_kwargs", None)
    if tuner is None or not hasattr(tuner, "search") or not isinstance(fit_kwargs, dict):
        raise TunerError(f"Tuner: {what} returned {type(res).__name__}; expected "
                         f"TunerFnResult(tuner=<a keras_tuner tuner>, fit_kwargs={{...}}) "
                         f"(from tfpipe.components.tuner import TunerFnResult)")
    return tuner, fit_kwargs


def _trial_records(oracle) -> list[dict]:
    out = []
    for tid, t in sorted(oracle.trials.items()):
        out.append({"trial_id": tid, "status": str(getattr(t.status, "value", t.status)),
                    "hyperparameters": dict(t.hyperparameters.values),
                    "score": None if t.score is None else float(t.score)})
    return out


def _fn_args_json(fn_args) -> str:
    d = {f.name: getattr(fn_args, f.name) for f in dataclasses.fields(fn_args) if f.name != "data_accessor"}
    return json.dumps(d)


def _serve_oracle(oracle, assigned: dict):
    """Serve ``oracle`` to worker tuners on 127.0.0.1; returns (server, port). ``assigned``
    records which worker (tuner id) took which trial (None: asked but was told to stop)."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from keras_tuner.src.engine.trial import TrialStatus

    class _Recording(OracleServicer):
        def CreateTrial(self, request, context):
            resp = super().CreateTrial(request, context)
            tid = resp.trial.trial_id if TrialStatus.from_proto(resp.trial.status) != TrialStatus.STOPPED else None
            assigned.setdefault(request.tuner_id, []).append(tid)
            return resp

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    protos.get_service_grpc().add_OracleServicer_to_server(_Recording(oracle), server)
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        raise TunerError("Tuner: cannot bind a port on 127.0.0.1 for the KerasTuner oracle")
    server.start()
    return server, port


def _run_parallel(tuner, n: int, module_file: str, ref: str, fn_args, ctx, log_dir: str) -> dict:
    tuner.save()
    assigned: dict = {}
    server, port = _serve_oracle(tuner.oracle, assigned)
    spec = {"module_file": os.path.abspath(module_file) if module_file else "", "ref": ref,
            "fn_args": json.loads(_fn_args_json(fn_args))}
    procs = []
    try:
        for i in range(n):
            env = dict(os.environ, KERASTUNER_TUNER_ID=f"tuner{i}", KERASTUNER_ORACLE_IP="127.0.0.1",
                       KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="2")
            log = open(os.path.join(log_dir, f"worker-{i}.log"), "w")
            procs.append((subprocess.Popen([sys.executable, "-m", "tfpipe.components._tuner_worker", json.dumps(spec)],
                                           env=env, stdout=log, stderr=subprocess.STDOUT), log))
        ctx.log(f"{n} tuner worker processes on oracle 127.0.0.1:{port}")
        shown = -1
        while any(p.poll() is None for p, _ in procs):
            time.sleep(0.5)
            done = sum(1 for t in tuner.oracle.trials.values() if t.status != "RUNNING")
            if done != shown:
                shown = done
                ctx.progress(done, getattr(tuner.oracle, "max_trials", None), "trials")
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
            log.close()
        server.stop(grace=1)
    failed = [(i, p.returncode) for i, (p, _) in enumerate(procs) if p.returncode != 0]
    if failed:
        i, rc = failed[0]
        with open(os.path.join(log_dir, f"worker-{i}.log")) as f:
            tail = f.read()[-1500:]
        raise TunerError(f"Tuner: worker process {i} of {n} exited with code {rc}; its output ends:\n{tail}")
    return assigned


@component(name="Tuner", driver=_driver, code_files=("_tuner_worker.py",),
           check=compile_check("Tuner", "tuner_fn", "tuner_fn"))
def Tuner(examples: Input[Examples], best_hyperparameters: Output[HyperParameters],
          transform_graph: Input[TransformGraph] | None = None, schema: Input[Schema] | None = None,
          module_file: ModuleFile = "", tuner_fn: str = "", train_steps: int = 0, eval_steps: int = 0,
          custom_config: dict = None, parallel_trials: int = 1,
          train_split: str = "train", eval_split: str = "eval") -> None:
    """``module_file`` (a file defining ``tuner_fn(fn_args)``) or ``tuner_fn``
    (``'package.module.function'``): exactly one."""
    from .trainer import build_fn_args
    ctx = current()
    what = describe(module_file, tuner_fn, "tuner_fn")
    user_fn = load_user_fn("Tuner", "tuner_fn", module_file, tuner_fn)
    import tempfile
    work = os.path.join(ctx.tmp_dir or tempfile.mkdtemp(prefix="tfpipe-tuner-"), "tuning")
    os.makedirs(work, exist_ok=True)
    fn_args = build_fn_args(examples, schema, transform_graph, train_split, eval_split, train_steps, eval_steps,
                            custom_config, None, working_dir=work)
    tuner, fit_kwargs = run_tuner_fn(user_fn, what, fn_args)
    t0 = time.monotonic()
    assigned = {"local": None}
    if parallel_trials > 1:
        assigned = _run_parallel(tuner, parallel_trials, module_file, tuner_fn, fn_args, ctx, work)
    else:
        ctx.log(f"searching with {type(tuner).__name__} in this process")
        on_trial_end = tuner.on_trial_end

        def logged_trial_end(trial):  # progress: one line per finished trial
            on_trial_end(trial)
            ctx.log(f"trial {trial.trial_id}: score {trial.score} with {dict(trial.hyperparameters.values)}")
        tuner.on_trial_end = logged_trial_end
        from ._autograph import libraries_not_autographed
        try:
            with libraries_not_autographed():  # as in the Trainer: a tf_keras model's first step in seconds
                tuner.search(**fit_kwargs)
        except Exception as e:
            raise TunerError(f"Tuner: the search of the tuner from {what} raised {type(e).__name__}: {e}") from e
    trials = _trial_records(tuner.oracle)
    by_trial = {tid: w for w, tids in assigned.items() for tid in (tids or []) if tid}
    for t in trials:
        t["worker"] = by_trial.get(t["trial_id"], "local")
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise TunerError(f"Tuner: the search of {what} completed no trial with a score ({len(trials)} trial(s): "
                         f"{[t['status'] for t in trials]})")
    hp = best[0].hyperparameters
    os.makedirs(best_hyperparameters.uri, exist_ok=True)
    with open(best_hyperparameters.values_path(), "w") as f:
        json.dump(dict(hp.values), f, indent=1, sort_keys=True)
    with open(best_hyperparameters.config_path(), "w") as f:
        json.dump(hp.get_config(), f, indent=1, sort_keys=True)
    with open(best_hyperparameters.trials_path(), "w") as f:
        json.dump({"parallel_trials": parallel_trials, "workers": sorted(assigned), "trials": trials},
                  f, indent=1, sort_keys=True)
    ctx.log(f"{len(trials)} trials in {time.monotonic() - t0:.1f}s with {parallel_trials} process(es); best "
            f"score {best[0].score:.4f}: {dict(hp.values)}")
