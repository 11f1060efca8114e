"""preprocessing_fn shared by every branch: z-scored measurements, the label as it is."""
import tensorflow_transform as tft
from parity_common import FEATURES, LABEL, xf


def preprocessing_fn(inputs):
    out = {xf(f): tft.scale_to_z_score(inputs[f]) for f in FEATURES}
    out[xf(LABEL)] = inputs[LABEL]
    return out
