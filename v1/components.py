"""``tfx.v1.components`` as module files use it: what ``run_fn`` / ``tuner_fn`` receive
and return. The component classes themselves (``Trainer``, ``Transform``, ...) are
tfpipe's, in ``tfpipe.components``, with their own signatures."""
from tfpipe.components.fn_args import DataAccessor, FnArgs, TunerFnResult

__all__ = ["FnArgs", "DataAccessor", "TunerFnResult"]
