"""What the idiom modules share and no Keras is in: names, the input datasets, the serving
signatures (TFX's penguin_utils_base.make_serving_signatures, in short)."""
import tensorflow as tf
from tfx_bsl.public import tfxio

FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")
LABEL = "species"


def xf(name):
    return f"{name}_xf"


def dataset(files, data_accessor, tf_transform_output, batch_size=20):
    return data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=xf(LABEL), shuffle=False),
        tf_transform_output.transformed_metadata.schema).repeat()


def signatures(model, tf_transform_output):
    """serving_default (serialized tf.Examples -> class probabilities, the transform graph
    applied) and transform_features; the TFT layer is tracked by the model."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        features = model.tft_layer(tf.io.parse_example(serialized, spec))
        return {"outputs": model({xf(f): features[xf(f)] for f in FEATURES})}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec()))

    return {"serving_default": serve, "transform_features": transform_features}


def space():
    """The search space every branch tunes (one trial of it: a seeded RandomSearch)."""
    import keras_tuner
    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [1e-2], default=1e-2)
    hp.Int("num_layers", 1, 2, default=1)
    return hp


def data(fn_args, tf_transform_output):
    """What both ``tuner.search`` and ``model.fit`` take: the datasets and their steps."""
    return {"x": dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output),
            "validation_data": dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output),
            "steps_per_epoch": fn_args.train_steps, "validation_steps": fn_args.eval_steps}
