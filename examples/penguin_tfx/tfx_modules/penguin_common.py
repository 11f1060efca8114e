"""Names shared by the penguin Transform, Trainer and Tuner modules (TFX's idiom)."""
import os

# TensorFlow Transform 1.16 works with Keras 2 only: with TensorFlow 2.16 that is tf_keras
# behind tf.keras.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

NUMERIC_FEATURES = (
    'culmen_length_mm',
    'culmen_depth_mm',
    'flipper_length_mm',
    'body_mass_g',
)
LABEL = 'species'
NUM_CLASSES = 3

TRAIN_BATCH = 20
EVAL_BATCH = 10


def xf(name: str) -> str:
  """The name of a feature after Transform."""
  return f'{name}_xf'
