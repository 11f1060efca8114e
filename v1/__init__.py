"""``tfpipe.v1``: the names of TFX's ``tfx.v1`` that module files use, so a TFX module
file (transform, trainer, tuner) ports by changing its import line alone::

    from tfx import v1 as tfx        ->   from tfpipe import v1 as tfx

after which ``tfx.components.FnArgs``, ``tfx.components.DataAccessor``,
``tfx.components.TunerFnResult``, ``tfx.dsl.io.fileio`` and ``tfx.utils.parse_pbtxt_file``
mean what they mean in TFX. Only what module files touch is here; the names TFX pipelines
are built from (``tfx.components.Trainer``, ``tfx.proto.TrainArgs``, ``tfx.dsl.Pipeline``,
``tfx.orchestration``, ``tfx.types.standard_artifacts``, ...) are not: a tfpipe pipeline
file is written with ``tfpipe.components`` and ``tfpipe.Pipeline`` (docs/transform_trainer.md,
"Porting a TFX module file").

A layer of its own (``v1/``, mapped as ``tfpipe.v1``): it re-exports components' classes,
so it may import the core and components, and nothing imports it (docs/architecture.md).
"""
from . import components, dsl, utils

__all__ = ["components", "dsl", "utils"]
