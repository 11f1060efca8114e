"""The penguin preprocessing_fn (TensorFlow Transform), a TFX-style module file.

Kept apart from the training code (penguin_utils.py) so that editing the model does not
change Transform's cache key: only Trainer and what follows re-run.

Every raw feature arrives as a tf.SparseTensor of dense shape [batch, 1] (the inferred
schema gives no fixed shape, and the data has missing values); each is densified with a
default before the full-pass analyzers run over the train split.
"""
import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = "species"
NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURES = ["island", "sex"]
FEATURE_KEYS = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def _dense(x, default):
    if isinstance(x, tf.SparseTensor):
        return tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    return x


def preprocessing_fn(inputs):
    outputs = {}
    for key in NUMERIC_FEATURES:
        x = tf.cast(inputs[key], tf.float32) if not isinstance(inputs[key], tf.SparseTensor) else \
            tf.SparseTensor(inputs[key].indices, tf.cast(inputs[key].values, tf.float32), inputs[key].dense_shape)
        # a missing measurement becomes the train mean, i.e. 0 after scaling
        dense = _dense(x, float("nan"))
        mean = tft.mean(x)
        dense = tf.where(tf.math.is_nan(dense), mean, dense)
        outputs[key] = tft.scale_to_z_score(dense)
    for key in CATEGORICAL_FEATURES:
        # a missing category is its own value; an unseen one goes to the one OOV bucket
        outputs[key] = tft.compute_and_apply_vocabulary(_dense(inputs[key], b"__missing__"), num_oov_buckets=1,
                                                        vocab_filename=key)
    outputs[LABEL_KEY] = tft.compute_and_apply_vocabulary(_dense(inputs[LABEL_KEY], b""), vocab_filename=LABEL_KEY)
    return outputs
