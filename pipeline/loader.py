"""Loading user code: a pipeline file or module file by path, and a component by the
reference the IR gives (``{"ref": "module:attr", "file": ...}``)."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys

from .component import ComponentSpec

__all__ = ["load_component", "load_module_from_file"]


def load_component(executor: dict, source: str | None = None) -> ComponentSpec:
    """Import a component by its IR reference ``{"ref": "module:attr", "file": ...}``.
    ``source``: the pipeline file the IR came from; a module beside it (``from helper
    import my_component`` in the pipeline file) is found from its folder, as it was when the
    file was loaded, whatever the working directory of the task."""
    mod_name, attr = executor["ref"].split(":")
    mod = None
    path = executor.get("file")
    if path is None or mod_name in sys.modules:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            folder = os.path.dirname(os.path.abspath(source)) if source else None
            if path is None and folder and e.name == mod_name.split(".")[0] and folder not in sys.path:
                sys.path.insert(0, folder)
                mod = importlib.import_module(mod_name)
            elif path is None:
                raise
        except ImportError:
            if path is None:
                raise
    if mod is None or not hasattr(mod, attr):
        if not path or not os.path.isfile(path):
            raise ImportError(f"cannot import component {executor['ref']} (file {path!r})")
        mod = load_module_from_file(path, mod_name)
    spec = getattr(mod, attr)
    if not isinstance(spec, ComponentSpec):
        raise TypeError(f"{executor['ref']} is a {type(spec).__name__}, expected a @component")
    return spec


def load_module_from_file(path: str, name: str | None = None):
    """Import the Python file ``path`` as a module (its folder joins ``sys.path``, so it can
    import its neighbours), under a private name unless ``name`` is given."""
    path = os.path.abspath(path)
    name = name or "tfpipe_user_" + hashlib.sha1(path.encode()).hexdigest()[:10]
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    mod.__tfpipe_loaded_from_file__ = True
    sys.modules[name] = mod
    d = os.path.dirname(path)
    if d not in sys.path:
        sys.path.insert(0, d)
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod
