"""The diabetes preprocessing_fn (TensorFlow Transform): every measurement z-scored over
the train split; the label (disease progression one year later) passes through raw."""
import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = "target"
FEATURE_KEYS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def _dense(x):
    x = tf.cast(x, tf.float32) if not isinstance(x, tf.SparseTensor) else \
        tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    if isinstance(x, tf.SparseTensor):
        return tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=0.0)
    return x


def preprocessing_fn(inputs):
    outputs = {key: tft.scale_to_z_score(_dense(inputs[key])) for key in FEATURE_KEYS}
    outputs[LABEL_KEY] = _dense(inputs[LABEL_KEY])
    return outputs
