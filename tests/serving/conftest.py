"""Tiny real SavedModels for the model server's tests: version k answers y = x * k and
parses tf.Examples with a float feature ``x`` (required, one value) and a string feature
``s`` (optional, any number of values)."""
import os
import shutil
import struct

import pytest


def save_model(path: str, k: float) -> str:
    import tensorflow as tf

    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.k = tf.Variable(float(k))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            f = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32),
                                               "s": tf.io.VarLenFeature(tf.string)})
            return {"y": f["x"] * self.k}

    m = M()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
    return path


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """{version: SavedModel directory} for versions 1 and 2 (y = x, y = 2x)."""
    d = tmp_path_factory.mktemp("saved")
    return {v: save_model(str(d / str(v)), v) for v in (1, 2)}


def put_version(base: str, version: int, src: str) -> str:
    """Copy a SavedModel in as ``base/version``, renamed into place whole (as the Pusher)."""
    tmp = os.path.join(base, f".tmp-{version}")
    shutil.copytree(src, tmp)
    os.replace(tmp, os.path.join(base, str(version)))
    return os.path.join(base, str(version))


def example(x: float) -> bytes:
    from tensorflow.core.example import example_pb2
    ex = example_pb2.Example()
    ex.features.feature["x"].float_list.value.append(x)
    ex.features.feature["s"].bytes_list.value.append(b"ok")
    return ex.SerializeToString()


def _ld(field: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([field << 3 | 2, len(payload)]) + payload


def example_with_bad_name(x: float) -> bytes:
    """A valid tf.Example for TensorFlow's parser plus a feature whose name is the byte 0xff
    (not UTF-8): a second ``features`` field, which the wire format merges into the first."""
    floats = _ld(1, struct.pack("<f", 1.0))  # FloatList.value, packed
    entry = _ld(1, b"\xff") + _ld(2, _ld(2, floats))  # map key, value = Feature{float_list}
    return example(x) + _ld(1, _ld(1, entry))  # Example.features{feature: entry}
