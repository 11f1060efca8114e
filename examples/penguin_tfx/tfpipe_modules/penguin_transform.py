"""Transform module: preprocessing_fn for the penguin table.

Each measurement becomes a z-score (mean and variance from a full pass of TFT's
analyzers over the train split); the integer species label passes through under its
transformed name.
"""
import tensorflow_transform as tft

from penguin_common import LABEL, NUMERIC_FEATURES, xf


def preprocessing_fn(inputs):
  """Raw feature tensors to transformed feature tensors."""
  outputs = {xf(name): tft.scale_to_z_score(inputs[name])
             for name in NUMERIC_FEATURES}
  outputs[xf(LABEL)] = inputs[LABEL]
  return outputs
