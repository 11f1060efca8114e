"""The Model contract, and the helper that exports a Keras model to it.

``<model.uri>/Format-Serving`` is a TensorFlow SavedModel (a ``tf.Module`` holding the Keras
model and the TFT layer) with two signatures, both taking one input ``examples``
(``tf.string [None]``, serialized RAW tf.Example, the label possibly absent):

- ``serving_default`` -> ``{"outputs": float32 [batch, n_classes]}`` class probabilities
  (``[batch, 1]`` for regression): parse -> transform graph -> model, so serving applies
  exactly the preprocessing training saw;
- ``transform_features`` -> the transformed features dict, the transformed label included
  when the raw label is present (an Evaluator gets the integer label from it).

``export_serving_model`` also saves the Keras weights beside it
(``<model.uri>/Format-Keras/model.weights.h5``) so a later Trainer can warm start
(``load_base_weights(model, fn_args.base_model)``).
"""
from __future__ import annotations

import os

from tfpipe import Model

__all__ = ["export_serving_model", "check_serving_model", "signature_defs", "load_base_weights", "ModelContractError",
           "SERVING_SIGNATURE", "TRANSFORM_SIGNATURE", "INPUT_NAME", "OUTPUT_NAME"]

SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"
INPUT_NAME = "examples"
OUTPUT_NAME = "outputs"
WEIGHTS_FILE = "model.weights.h5"


class ModelContractError(RuntimeError):
    """The exported model does not follow the Model contract."""


def _model_input_names(model) -> list[str] | None:
    inp = getattr(model, "input", None)
    if isinstance(inp, dict):
        return list(inp)
    try:
        return [t.name for t in model.inputs]
    except (AttributeError, TypeError, ValueError):
        return None


def _serving_module(model, tft_output, raw_spec: dict, label_key: str | None, raw_label_key: str | None):
    import tensorflow as tf

    serve_spec = {k: v for k, v in raw_spec.items() if k != raw_label_key}
    input_names = _model_input_names(model)

    class _Specs:  # a plain holder: tf.Module does not track it
        def __init__(self, full, serve):
            self.full, self.serve = full, serve

    class ServingModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.tft_layer = tft_output.transform_features_layer() if tft_output is not None else None
            self._specs = _Specs(raw_spec, serve_spec)

        def _features(self, parsed):
            feats = dict(self.tft_layer(parsed)) if self.tft_layer is not None else dict(parsed)
            return feats

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
        def serve(self, examples):
            feats = self._features(tf.io.parse_example(examples, self._specs.serve))
            feats.pop(label_key, None)
            if input_names and all(n in feats for n in input_names):
                feats = {n: feats[n] for n in input_names}
            out = self.model(feats)
            if isinstance(out, dict):
                out = next(iter(out.values()))
            return {OUTPUT_NAME: tf.cast(out, tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
        def transform(self, examples):
            return self._features(tf.io.parse_example(examples, self._specs.full))

    return ServingModule()


def export_serving_model(model, tf_transform_output, serving_model_dir: str, label_key: str | None = None,
                         raw_label_key: str | None = None, raw_feature_spec: dict | None = None) -> str:
    """Save ``model`` (Keras 3) behind the contract's signatures at ``serving_model_dir``.

    ``tf_transform_output``: a ``tft.TFTransformOutput`` (or its path), or None when the
    model takes raw parsed features (then give ``raw_feature_spec``). ``label_key``: the
    transformed label feature, removed before the model is called; ``raw_label_key``
    (default ``label_key``): the raw label column, optional in served examples.
    """
    import tensorflow as tf
    if isinstance(tf_transform_output, (str, os.PathLike)):
        import tensorflow_transform as tft
        tf_transform_output = tft.TFTransformOutput(os.fspath(tf_transform_output))
    if raw_feature_spec is None:
        if tf_transform_output is None:
            raise ModelContractError("export_serving_model: without a transform output, pass raw_feature_spec "
                                     "(how to parse the raw tf.Example)")
        raw_feature_spec = tf_transform_output.raw_feature_spec()
    raw_label_key = raw_label_key or label_key
    module = _serving_module(model, tf_transform_output, dict(raw_feature_spec), label_key, raw_label_key)
    signatures = {SERVING_SIGNATURE: module.serve.get_concrete_function(),
                  TRANSFORM_SIGNATURE: module.transform.get_concrete_function()}
    tf.saved_model.save(module, serving_model_dir, signatures=signatures)
    keras_dir = os.path.join(os.path.dirname(os.path.abspath(serving_model_dir)), Model.KERAS_DIR)
    os.makedirs(keras_dir, exist_ok=True)
    try:
        model.save_weights(os.path.join(keras_dir, WEIGHTS_FILE))
    except Exception:  # a model without Keras weights: warm start is just unavailable
        pass
    return serving_model_dir


def load_base_weights(model, base_model: str | None) -> bool:
    """Warm start: load the weights a previous Trainer exported beside ``base_model``
    (``fn_args.base_model``, a Format-Serving dir). True if loaded."""
    if not base_model:
        return False
    path = os.path.join(os.path.dirname(os.path.abspath(base_model)), Model.KERAS_DIR, WEIGHTS_FILE)
    if not os.path.isfile(path):
        return False
    model.load_weights(path)
    return True


def signature_defs(saved_model_dir: str) -> dict:
    """``{name: SignatureDef}`` of the SavedModel in ``saved_model_dir``, read from
    saved_model.pb without loading the model (the inputs and outputs each signature
    declares, in milliseconds rather than the seconds a load takes)."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    sigs = {}
    for mg in sm.meta_graphs:
        sigs.update(mg.signature_def)
    return sigs


def check_serving_model(serving_model_dir: str, where: str) -> list[str]:
    """Raise ModelContractError unless ``serving_model_dir`` holds a SavedModel whose
    ``serving_default`` takes ``examples`` (tf.string); return its signature names. Reads
    saved_model.pb only; nothing is loaded."""
    pb = os.path.join(serving_model_dir, "saved_model.pb")
    if not os.path.isfile(pb):
        found = sorted(os.listdir(serving_model_dir)) if os.path.isdir(serving_model_dir) else "nothing"
        raise ModelContractError(
            f"{where} saved no model: expected a TensorFlow SavedModel at fn_args.serving_model_dir "
            f"({serving_model_dir}), found {found}; export it with "
            f"tfpipe.components.trainer.export_serving_model(model, tf_transform_output, "
            f"fn_args.serving_model_dir, label_key)")
    sigs = signature_defs(serving_model_dir)
    if SERVING_SIGNATURE not in sigs:
        raise ModelContractError(
            f"{where} saved a SavedModel at {serving_model_dir} without a {SERVING_SIGNATURE!r} signature "
            f"(signatures: {sorted(sigs) or 'none'}); expected {SERVING_SIGNATURE}(examples: tf.string [None]) "
            f"-> {{'outputs': probabilities}}; export it with tfpipe.components.trainer.export_serving_model(...)")
    inputs = dict(sigs[SERVING_SIGNATURE].inputs)
    if list(inputs) != [INPUT_NAME]:
        raise ModelContractError(
            f"{where}: the {SERVING_SIGNATURE} signature of {serving_model_dir} takes inputs {sorted(inputs)}; "
            f"expected one input {INPUT_NAME!r} (serialized tf.Example); export it with "
            f"tfpipe.components.trainer.export_serving_model(...)")
    return sorted(sigs)
