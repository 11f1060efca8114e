"""Loading a user function (``preprocessing_fn``, ``run_fn``, ``tuner_fn``) from a module
file or a Python reference, with errors that name the module, the function and where.

Two steps: ``check_static`` (no import: the file exists, parses, defines the function
with the right number of parameters) runs in the component's driver, before the cache
decision, so a broken module fails fast and cheaply; ``load_user_fn`` imports it in the
executor and checks the real object.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os

__all__ = ["UserCodeError", "UserFunctionError", "check_static", "load_user_fn", "describe",
           "call_user_fn", "resolve_source"]


class UserCodeError(ValueError):
    """The user's module file or function is missing or malformed."""


class UserFunctionError(RuntimeError):
    """The user's function raised; the message carries the user's own message."""


def describe(module_file: str, ref: str, fn_name: str) -> str:
    if module_file:
        return f"{fn_name} in module file {os.path.abspath(module_file)}"
    return f"{ref}"


def _one_given(component: str, fn_name: str, module_file: str, ref: str) -> None:
    if bool(module_file) == bool(ref):
        found = "both" if module_file else "neither"
        raise UserCodeError(f"{component}: expected exactly one of module_file=... (a file defining "
                            f"{fn_name}) or {fn_name}='package.module.function', found {found}")


def resolve_source(ref: str) -> str | None:
    """The source file of the module a ``pkg.mod.fn`` reference points at, found without
    running it (only parent packages are imported)."""
    mod_name = ref.rpartition(".")[0]
    if not mod_name:
        return None
    try:
        spec = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec and spec.origin and os.path.isfile(spec.origin) else None


def _arg_hint(fn_name: str, nargs: int) -> str:
    """How the user's function is usually written: ``preprocessing_fn(inputs)``, ``run_fn(fn_args)``."""
    return "inputs" if fn_name == "preprocessing_fn" or nargs != 1 else "fn_args"


def compile_check(component: str, fn_name: str, ref_param: str):
    """A component's ``check``: when the pipeline is compiled, its ``module_file`` must exist,
    parse and define ``fn_name`` (a ``ref_param`` Python reference may live only where the
    node runs, e.g. in the pipeline image: it is checked there)."""
    def check(params: dict) -> None:
        module_file, ref = params.get("module_file") or "", params.get(ref_param) or ""
        _one_given(component, fn_name, module_file, ref)
        if module_file:
            check_static(component, fn_name, module_file)
    return check


def check_static(component: str, fn_name: str, module_file: str = "", ref: str = "",
                 nargs: int = 1) -> None:
    """Check without importing: the file exists and parses, and defines ``fn_name`` at top
    level taking ``nargs`` positional parameters."""
    _one_given(component, fn_name, module_file, ref)
    if ref:
        if "." not in ref:
            raise UserCodeError(f"{component}: {fn_name}={ref!r} is not a Python reference; expected "
                                f"'package.module.function'")
        path, name = resolve_source(ref), ref.rpartition(".")[2]
        if path is None:
            raise UserCodeError(f"{component}: cannot find module {ref.rpartition('.')[0]!r} of "
                                f"{fn_name}={ref!r} on the Python path")
    else:
        path, name = os.path.abspath(module_file), fn_name
        if not os.path.isfile(path):
            raise UserCodeError(f"{component}: module file {path} does not exist; expected a Python "
                                f"file defining {fn_name}(...)")
    with open(path, "rb") as f:
        src = f.read()
    try:
        tree = ast.parse(src, filename=path)
    except SyntaxError as e:
        raise UserCodeError(f"{component}: module file {path}, line {e.lineno}, column {e.offset}: "
                            f"syntax error: {e.msg}; cannot load {name}") from None
    defs = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defs[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.ImportFrom, ast.Import)):
            targets = []
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            else:
                targets = [(a.asname or a.name).split(".")[0] for a in node.names]
            for t in targets:
                defs[t] = None  # defined dynamically: checked when imported
    if name not in defs:
        have = sorted(n for n, d in defs.items() if d is not None)
        raise UserCodeError(f"{component}: module file {path} defines no function {name}; expected "
                            f"def {name}({_arg_hint(name, nargs)}): ...; functions found: {have}")
    node = defs[name]
    if node is not None:
        a = node.args
        positional = len(a.posonlyargs) + len(a.args)
        required = positional - len(a.defaults)
        if not (required <= nargs <= positional or (a.vararg and required <= nargs)):
            raise UserCodeError(
                f"{component}: {name} in module file {path}, line {node.lineno}: takes {positional} "
                f"positional parameter(s) ({', '.join(x.arg for x in a.posonlyargs + a.args) or 'none'}); "
                f"expected exactly {nargs}, e.g. def {name}({_arg_hint(name, nargs)})")


def load_user_fn(component: str, fn_name: str, module_file: str = "", ref: str = "", nargs: int = 1):
    """Import and return the user's function, checked to be callable with ``nargs`` args."""
    check_static(component, fn_name, module_file, ref, nargs)
    if module_file:
        from tfpipe.loader import load_module_from_file
        path = os.path.abspath(module_file)
        try:
            mod = load_module_from_file(path)
        except SyntaxError as e:
            raise UserCodeError(f"{component}: module file {path}, line {e.lineno}: syntax error: {e.msg}") from None
        except Exception as e:
            raise UserCodeError(f"{component}: importing module file {path} (for {fn_name}) raised "
                                f"{type(e).__name__}: {e}") from e
        attr, where = fn_name, f"module file {path}"
    else:
        mod_name, _, attr = ref.rpartition(".")
        try:
            mod = importlib.import_module(mod_name)
        except Exception as e:
            raise UserCodeError(f"{component}: importing module {mod_name} (for {fn_name}={ref!r}) raised "
                                f"{type(e).__name__}: {e}") from e
        where = f"module {mod_name} ({getattr(mod, '__file__', '?')})"
    fn = getattr(mod, attr, None)
    if fn is None:
        raise UserCodeError(f"{component}: {where} defines no {attr}; expected a function {attr}(...)")
    if not callable(fn):
        raise UserCodeError(f"{component}: {attr} in {where} is a {type(fn).__name__}, expected a function")
    try:
        inspect.signature(fn).bind(*([None] * nargs))
    except TypeError:
        raise UserCodeError(f"{component}: {attr}{inspect.signature(fn)} in {where} cannot be called with "
                            f"{nargs} argument(s); expected def {attr}({_arg_hint(attr, nargs)})") from None
    except ValueError:
        pass
    return fn


def call_user_fn(component: str, fn, what: str, *args):
    """Call the user's function; an exception it raises becomes a UserFunctionError that
    names the function and keeps the user's message (the original is chained)."""
    try:
        return fn(*args)
    except Exception as e:
        raise UserFunctionError(f"{component}: {what} raised {type(e).__name__}: {e}") from e
