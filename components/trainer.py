"""Trainer: the user's ``run_fn(fn_args)`` trains a model and exports it to
``fn_args.serving_model_dir``; the Trainer checks the export follows the Model contract
(see ``model_export``) and records the run.

A TFX module file ports by changing its import lines alone::

    from tfx import v1 as tfx                                  ->  from tfpipe import v1 as tfx
    from tfx.components.trainer.fn_args_utils import FnArgs   ->  from tfpipe.v1.components import FnArgs
    from tfx_bsl.public import tfxio                           (unchanged: its TensorFlowDatasetOptions works)

``fn_args.hyperparameters`` is what TFX gives (the KerasTuner config); the model may be
saved with ``tf.saved_model.save`` and the module's own signatures, as in TFX, or with
``export_serving_model`` (the Model contract the penguin example follows); TFX's
``model.save(dir, save_format='tf', signatures=...)`` writes the same SavedModel with a
Keras 3 model (``_savedmodel_save``).

While ``run_fn`` runs, every ``keras.Model.fit`` call gets two callbacks added: one that
records the per-epoch History (``<model_run.uri>/history.json``) and logs progress, and a
TensorBoard callback writing under ``fn_args.model_run_dir`` (unless one is already there).
"""
from __future__ import annotations

import contextlib
import json
import os

from tfpipe import (
    Examples,
    HyperParameters,
    Input,
    Model,
    ModelRun,
    ModuleFile,
    Output,
    Schema,
    TransformGraph,
    component,
    current,
)

from ._autograph import libraries_not_autographed
from ._user_code import call_user_fn, check_static, compile_check, describe, load_user_fn
from .fn_args import DataAccessor, FnArgs, TensorFlowDatasetOptions, TunerFnResult
from .model_export import (
    ModelContractError,
    check_serving_model,
    export_serving_model,
    load_base_weights,
)

__all__ = ["Trainer", "FnArgs", "DataAccessor", "TensorFlowDatasetOptions", "TunerFnResult",
           "export_serving_model", "load_base_weights", "ModelContractError", "TrainerError",
           "build_fn_args"]


class TrainerError(RuntimeError):
    pass


def _driver(params: dict) -> dict:
    check_static("Trainer", "run_fn", params.get("module_file") or "", params.get("run_fn") or "")
    out = {}
    ref = params.get("run_fn")
    if ref:
        from tfpipe.fingerprint import module_fingerprint

        from ._user_code import resolve_source
        out["run_fn_fingerprint"] = module_fingerprint(resolve_source(ref))
    return out


def read_hyperparameters(hp: HyperParameters | None) -> dict | None:
    """What TFX hands ``run_fn`` as ``fn_args.hyperparameters``: the best trial's
    ``keras_tuner.HyperParameters.get_config()`` (``{"space": [...], "values": {...}}``), which
    ``HyperParameters.from_config`` takes. An artifact holding only the values (no config
    file) gives ``{"space": [], "values": {...}}``, which ``from_config`` takes too."""
    if hp is None:
        return None
    config_path, values_path = hp.config_path(), hp.values_path()
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
        if not (isinstance(config, dict) and isinstance(config.get("space"), list)
                and isinstance(config.get("values"), dict)):
            raise TrainerError(f"HyperParameters artifact at {hp.uri}: {hp.CONFIG_FILE} is not a KerasTuner "
                               f"HyperParameters config; expected {{'space': [...], 'values': {{...}}}}, found "
                               f"{type(config).__name__} with keys "
                               f"{sorted(config) if isinstance(config, dict) else []}")
        return config
    if not os.path.isfile(values_path):
        raise TrainerError(f"HyperParameters artifact at {hp.uri} has neither {hp.CONFIG_FILE} nor {hp.VALUES_FILE}")
    with open(values_path) as f:
        values = json.load(f)
    if not isinstance(values, dict):
        raise TrainerError(f"HyperParameters artifact at {hp.uri}: {hp.VALUES_FILE} holds {type(values).__name__}; "
                           f"expected a JSON object of hyperparameter values")
    return {"space": [], "values": values}


def build_fn_args(examples, schema=None, transform_graph=None, train_split="train", eval_split="eval",
                  train_steps=None, eval_steps=None, custom_config=None, hyperparameters=None,
                  serving_model_dir=None, model_run_dir=None, base_model=None, working_dir=None) -> FnArgs:
    for s in (train_split, eval_split):
        if s not in (examples.split_names or []):
            raise TrainerError(f"split {s!r} is not in the examples at {examples.uri}; splits: {examples.split_names}")
    return FnArgs(
        train_files=examples.files(train_split), eval_files=examples.files(eval_split),
        train_steps=train_steps or None, eval_steps=eval_steps or None,
        schema_path=schema.schema_path() if schema is not None else None,
        transform_graph_path=transform_graph.uri if transform_graph is not None else None,
        serving_model_dir=serving_model_dir, model_run_dir=model_run_dir,
        hyperparameters=read_hyperparameters(hyperparameters), custom_config=dict(custom_config or {}),
        base_model=base_model.serving_dir() if base_model is not None else None,
        data_accessor=DataAccessor(), working_dir=working_dir, examples_format=examples.payload_format or "parquet")


def _keras_flavours() -> list:
    """The Keras packages a ``run_fn`` may train with: Keras 3 and, when tf_keras is in use
    (imported, as TensorFlow Transform does for its layer, or behind ``tf.keras`` with
    ``TF_USE_LEGACY_KERAS=1``), Keras 2 as well."""
    import sys

    import keras
    out = [keras]
    if "tf_keras" in sys.modules or os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true"):
        try:
            import tf_keras
            out.append(tf_keras)
        except ImportError:
            pass
    return out


@contextlib.contextmanager
def _recording_fit(history: dict, log_dir: str, log):
    """Add a History recorder (and TensorBoard) to every ``Model.fit`` call in the block,
    Keras 3's and tf_keras's alike."""
    def on_epoch_end(epoch, logs):
        logs = logs or {}
        for k, v in logs.items():
            try:
                history.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                pass
        shown = ", ".join(f"{k}={float(v):.4f}" for k, v in sorted(logs.items())
                          if isinstance(v, (int, float)) or hasattr(v, "__float__"))
        log(f"epoch {len(history.get('loss', [])) or epoch + 1}: {shown}")

    ctx = current()

    def patched(k):
        class _Recorder(k.callbacks.Callback):
            def on_train_begin(self, logs=None):
                p = self.params or {}
                self._step, self._total = 0, (p.get("steps") or 0) * (p.get("epochs") or 1) or None

            def on_train_batch_end(self, batch, logs=None):
                self._step += 1
                ctx.progress(self._step, self._total, "steps trained")

            def on_epoch_end(self, epoch, logs=None):
                on_epoch_end(epoch, logs)

        original = k.Model.fit

        def fit(self, *args, **kwargs):
            cbs = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, k.callbacks.TensorBoard) for c in cbs):
                cbs.append(k.callbacks.TensorBoard(log_dir=log_dir))
            cbs.append(_Recorder())
            kwargs["callbacks"] = cbs
            if len(args) < 5:  # fit(x, y, batch_size, epochs, verbose, ...): not given positionally
                kwargs.setdefault("verbose", 0)  # progress is the node's log lines, not a bar per step
            return original(self, *args, **kwargs)
        return original, fit

    saved = []
    try:
        for k in _keras_flavours():
            original, fit = patched(k)
            saved.append((k, original))
            k.Model.fit = fit
        yield
    finally:
        for k, original in saved:
            k.Model.fit = original


@contextlib.contextmanager
def _savedmodel_save():
    """TFX's Keras modules save with ``model.save(dir, save_format='tf', signatures=...)``,
    tf_keras's SavedModel export; Keras 3 (``tf.keras`` under tfpipe's rule,
    ``tfpipe.runtime.pin_keras``) refuses ``save_format``. In the block, Keras 3's
    ``Model.save`` to a directory with ``save_format='tf'`` (or ``'tensorflow'``) writes the
    same SavedModel through ``tf.saved_model.save(model, dir, signatures, options)``; any
    other call is Keras 3's own."""
    import keras
    original = keras.Model.save

    def save(self, filepath, *args, **kwargs):
        fmt = kwargs.get("save_format")
        if (isinstance(fmt, str) and fmt.lower() in ("tf", "tensorflow") and not args
                and not str(filepath).endswith((".keras", ".h5", ".hdf5"))):
            import tensorflow as tf
            tf.saved_model.save(self, str(filepath), signatures=kwargs.get("signatures"),
                                options=kwargs.get("options"))
            return None
        return original(self, filepath, *args, **kwargs)
    keras.Model.save = save
    try:
        yield
    finally:
        keras.Model.save = original


@component(name="Trainer", driver=_driver, check=compile_check("Trainer", "run_fn", "run_fn"))
def Trainer(examples: Input[Examples], model: Output[Model], model_run: Output[ModelRun],
            transform_graph: Input[TransformGraph] | None = None, schema: Input[Schema] | None = None,
            base_model: Input[Model] | None = None, hyperparameters: Input[HyperParameters] | None = None,
            module_file: ModuleFile = "", run_fn: str = "", train_steps: int = 0, eval_steps: int = 0,
            custom_config: dict = None, train_split: str = "train", eval_split: str = "eval") -> None:
    """``module_file`` (a file defining ``run_fn(fn_args)``) or ``run_fn``
    (``'package.module.function'``): exactly one. ``train_steps``/``eval_steps`` 0 = unset (None)."""
    ctx = current()
    what = describe(module_file, run_fn, "run_fn")
    user_fn = load_user_fn("Trainer", "run_fn", module_file, run_fn)
    serving_dir = model.serving_dir()
    fn_args = build_fn_args(examples, schema, transform_graph, train_split, eval_split, train_steps, eval_steps,
                            custom_config, hyperparameters, serving_dir, model_run.uri, base_model,
                            working_dir=ctx.tmp_dir or None)
    ctx.log(f"{what}: {len(fn_args.train_files)} train / {len(fn_args.eval_files)} eval file(s), "
            f"train_steps={fn_args.train_steps}, eval_steps={fn_args.eval_steps}"
            + (", with tuned hyperparameters" if fn_args.hyperparameters else "")
            + (", warm start from " + fn_args.base_model if fn_args.base_model else ""))
    history: dict = {}
    os.makedirs(model_run.uri, exist_ok=True)
    with _recording_fit(history, model_run.uri, ctx.log), _savedmodel_save(), libraries_not_autographed():
        call_user_fn("Trainer", user_fn, what, fn_args)
    sigs = check_serving_model(serving_dir, f"Trainer: {what}")
    with open(model_run.history_path(), "w") as f:
        json.dump(history, f, indent=1, sort_keys=True)
    model.framework = "tensorflow"
    final = {k: v[-1] for k, v in history.items() if v}
    ctx.log(f"exported SavedModel with signatures {sigs}; final epoch: "
            + (", ".join(f"{k}={v:.4f}" for k, v in sorted(final.items())) or "no keras fit recorded"))
