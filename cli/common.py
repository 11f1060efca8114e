"""What every ``tfpipe`` command shares: exit codes, the usage error, loading a pipeline
file, and opening the ML Metadata store. Imports only the standard library at start-up."""
from __future__ import annotations

import argparse
import os

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "PipelineFileError", "load_pipeline",
           "compile_file", "pipeline_function", "metadata_location", "open_store", "add_metadata_args"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command was called wrongly (exit 2): what was expected, what was found."""


class PipelineFileError(Exception):
    """The user's pipeline file failed while it was imported or its create_pipeline() ran;
    the message names the user's file and line (the innermost frame in their code)."""


def _ours(filename: str) -> bool:
    """A frame of tfpipe, the standard library or an installed package (not the user's)."""
    import sysconfig

    import tfpipe
    here = os.path.dirname(os.path.dirname(os.path.abspath(tfpipe.__file__)))  # the folders of tfpipe's layers
    ours = [os.path.join(here, d) for d in ("pipeline", "components", "orchestrators", "tracking", "cli", "serving")]
    ours += [os.path.dirname(os.path.abspath(tfpipe.__file__))]
    ours += [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    f = os.path.abspath(filename)
    return filename.startswith("<") or any(f == d or f.startswith(d + os.sep) for d in ours)


def _user_error(path: str, what: str, e: BaseException) -> PipelineFileError:
    import linecache
    import traceback
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not _ours(f.filename)]
    where = ""
    if frames:
        f = frames[-1]
        line = (linecache.getline(f.filename, f.lineno) or "").strip()
        where = f" at {f.filename}, line {f.lineno}" + (f" (in {f.name}): {line}" if line else f" (in {f.name})")
    msg = str(e).strip()
    return PipelineFileError(f"pipeline file {path}: {what} failed{where}: {type(e).__name__}"
                             + (f": {msg}" if msg else ""))


def pipeline_function(path: str):
    """A pipeline file's ``create_pipeline`` function (the file imported once); an error
    while importing it names the user's file and line."""
    from tfpipe.loader import load_module_from_file
    if not os.path.isfile(path):
        raise UsageError(f"pipeline file {path} does not exist")
    try:
        mod = load_module_from_file(path)
    except Exception as e:
        raise _user_error(path, "importing it", e) from None
    if not hasattr(mod, "create_pipeline"):
        raise UsageError(f"pipeline file {path} defines no create_pipeline() function")
    return mod.create_pipeline


def load_pipeline(path: str, keywords: dict | None = None):
    """Import a pipeline file and call its ``create_pipeline(**keywords)``; an error in
    either names the user's file and line."""
    fn = pipeline_function(path)
    try:
        p = fn(**(keywords or {}))
    except Exception as e:
        raise _user_error(path, "create_pipeline()", e) from None
    p.source = os.path.abspath(path)
    return p


def _load_and_compile(path: str, keywords: dict | None) -> dict:
    from tfpipe.compiler import compile_pipeline
    p = load_pipeline(path, keywords)
    ir = compile_pipeline(p)
    ir["pipeline"]["source"] = p.source
    return ir


def compile_file(path: str, keywords: dict | None = None, cache: bool = False, log=None) -> dict:
    """The IR of a pipeline file (``create_pipeline(**keywords)``), with the file it came
    from. With ``cache`` and no keywords, the IR stored by an earlier call is used when
    nothing the file's loading depended on has changed, and a freshly compiled IR is stored
    (``cli/ir_cache.py`` states the rule); ``log(line)`` hears which it was."""
    if not cache or keywords:
        return _load_and_compile(path, keywords)
    from . import ir_cache
    entry, why = ir_cache.lookup(path)
    if entry is not None:
        if log:
            log(f"tfpipe: IR of {path} from the cache, {why} (--no-ir-cache loads the file anew)")
        return entry["ir"]
    with ir_cache.record() as rec:
        ir = _load_and_compile(path, None)
    stored = ir_cache.store(path, rec, ir)
    if log:
        log(f"tfpipe: loaded {path} ({why})" + ("" if stored else "; its IR is not cached (it sets a "
                                                                "secret-looking environment variable, or the "
                                                                "cache directory is not writable)"))
    return ir


def metadata_location(given: str | None) -> str:
    from tfpipe.graph import default_home
    return given or os.path.join(default_home(), "metadata.sqlite")


def open_store(given: str | None, recover: bool = True):
    """The ML Metadata store a tracking command reads (``--metadata``, ``$TFPIPE_METADATA``
    or the default SQLite file). Runs and executions a killed process left RUNNING are
    recovered first (one line says so)."""
    import sys

    from tfpipe.metadata import MetadataStore, parse_location
    from tfpipe.recovery import recover as recover_dead
    where = given or os.environ.get("TFPIPE_METADATA") or metadata_location(None)
    loc = parse_location(where)
    if "sqlite" in loc and not os.path.exists(loc["sqlite"]):
        raise UsageError(f"no metadata store at {loc['sqlite']}; run a pipeline first or pass --metadata")
    store = MetadataStore(where)
    if recover:
        done = recover_dead(store)
        if done:
            print(f"tfpipe: {done.line()}", file=sys.stderr, flush=True)
    return store


def add_metadata_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--metadata", help="ML Metadata store: a SQLite file, or a URL such as "
                                       "mysql://user@host:3306/db (default: $TFPIPE_METADATA, else "
                                       "$TFPIPE_HOME/metadata.sqlite)")
    sp.add_argument("--json", action="store_true")
