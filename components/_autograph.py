"""Keeping libraries' own code out of TensorFlow's AutoGraph while user code is traced.

AutoGraph converts, statement by statement, every Python function a ``tf.function`` calls,
except those of modules its configuration lists as not to convert (TensorFlow's own,
NumPy's, ``keras``'s ...). TensorFlow 2.16 (the version pinned) does not list ``tf_keras``
(later releases do) nor ``tensorflow_transform``, so tracing a ``preprocessing_fn``
converts TFT's analyzers and mappers, and the first ``fit`` of a tf_keras model, or the
tracing of a serving signature that calls one, converts tf_keras's whole functional call
path: about 45 s for TFX's penguin model on two cores, against 1.5 s without. Both
libraries' code runs in TF1 graph mode, where there is no AutoGraph, so it needs no
conversion; the user's own functions are still converted. Transform, Trainer and Evaluator
run the user's code (preprocessing_fn, run_fn, a model) inside ``libraries_not_autographed()``.
"""
from __future__ import annotations

import contextlib

__all__ = ["libraries_not_autographed", "NOT_CONVERTED"]

NOT_CONVERTED = ("tf_keras", "tensorflow_transform")


@contextlib.contextmanager
def libraries_not_autographed(modules: tuple[str, ...] = NOT_CONVERTED):
    """For the ``with`` block, AutoGraph leaves ``modules``' code unconverted."""
    try:
        from tensorflow.python.autograph.core import config
        before = config.CONVERSION_RULES
        rules = tuple(config.DoNotConvert(m) for m in modules)
    except (ImportError, AttributeError):  # another TensorFlow: leave it as it is
        yield
        return
    config.CONVERSION_RULES = (*before, *rules)
    try:
        yield
    finally:
        config.CONVERSION_RULES = before
