"""The layers, as the folders show them and pyproject.toml maps them into ``tfpipe``:

    pipeline/ (the core, ``tfpipe``)  <-  serving/  <-  components/, orchestrators/  <-  tracking/  <-  cli/
                                                     components/  <-  v1/ (``tfpipe.v1``, TFX's module-file names)

Each layer may import only the layers to its left (tracking also the orchestrators, to
re-run; components and orchestrators never each other); the CLI may import everything.
References count however they are written: import statements (absolute or relative),
"pkg.mod:attr" strings, module names passed to ``importlib.import_module`` or ``-m``. And
nothing heavy (TensorFlow, TFDV, Beam, ...) is imported at module level, so the CLI starts
fast and an Airflow DAG parse never pays for it."""
import ast
import importlib
import os
import re
import sys
import tomllib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "pyproject.toml"), "rb") as _f:
    PACKAGE_DIR = tomllib.load(_f)["tool"]["setuptools"]["package-dir"]
FOLDER = {v: k for k, v in PACKAGE_DIR.items()}  # folder -> package
LAYER_OF_PACKAGE = {pkg: folder for folder, pkg in FOLDER.items()}
ALLOWED = {  # folder -> the folders it may reference (besides itself)
    "pipeline": set(),
    # the model server: only the core, so both the InfraValidator (a component) and
    # `tfpipe serve` (tracking) can run the same server without depending on each other
    "serving": {"pipeline"},
    "components": {"pipeline", "serving"},
    "orchestrators": {"pipeline"},
    "tracking": {"pipeline", "orchestrators", "serving"},
    "cli": {"pipeline", "components", "orchestrators", "serving", "tracking"},
    # TFX's module-file names (tfpipe.v1.components.FnArgs, ...): re-exports of components'
    # classes, so above components; nothing of ours imports it (a user's module file does)
    "v1": {"pipeline", "components"},
}
# never importable at top level
OLD_NAMES = {"pipeline", "components", "orchestrators", "serving", "tracking", "cli", "v1"}
HEAVY = {"tensorflow", "tensorflow_data_validation", "tensorflow_transform", "tensorflow_model_analysis",
         "apache_beam", "tfx_bsl", "keras", "keras_tuner", "mlflow", "kfp", "airflow", "google", "pyarrow",
         "pandas", "numpy", "ml_metadata", "yaml", "starlette", "uvicorn", "tensorflow_serving", "deltalake",
         "fastavro"}
_REF = re.compile(r"\btfpipe(?:\.[A-Za-z_]\w*)*")
_OLD_REF = re.compile(r"^(pipeline|components|orchestrators|serving|tracking|cli)(\.\w+)*:\w+$")


def layer_of(module: str) -> str | None:
    """The folder (layer) an absolute module name lives in, or None when it is not ours."""
    if module != "tfpipe" and not module.startswith("tfpipe."):
        return None
    best = max((p for p in LAYER_OF_PACKAGE if module == p or module.startswith(p + ".")), key=len)
    return LAYER_OF_PACKAGE[best]


def _modules(folder):
    for d, _, files in os.walk(os.path.join(REPO, folder)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(d, f)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].split(os.sep)
    folder, rest = rel[0], rel[1:]
    if rest[-1] == "__init__":
        rest = rest[:-1]
    return ".".join([FOLDER[folder], *rest])


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def references(path: str, top_level_only: bool = False):
    """``(line, module name, how)`` for every module a file reaches."""
    tree = ast.parse(open(path).read(), filename=path)
    me = _module_name(path)
    package = me if path.endswith("__init__.py") else me.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    docs = _docstrings(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, "import"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
                yield node.lineno, mod, "relative import"
                if not node.module:  # from .. import x: x may be a module
                    for a in node.names:
                        yield node.lineno, f"{mod}.{a.name}", "relative import"
            elif node.module:
                yield node.lineno, node.module, "import"
        elif (not top_level_only and isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docs):
            for m in _REF.findall(node.value):
                yield node.lineno, m, "string"
            if _OLD_REF.match(node.value.strip()):
                yield node.lineno, node.value.strip().split(":")[0], "old-name string"


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_no_reference_points_outward(folder):
    bad = []
    for p in _modules(folder):
        for line, mod, how in references(p):
            where = f"{os.path.relpath(p, REPO)}:{line}"
            if how == "old-name string" or mod.split(".")[0] in OLD_NAMES:
                bad.append(f"{where} names {mod!r} ({how}): use the tfpipe namespace")
                continue
            target = layer_of(mod)
            if target and target != folder and target not in ALLOWED[folder]:
                bad.append(f"{where} reaches {mod} in {target}/ ({how}); {folder}/ may reach "
                           f"{sorted(ALLOWED[folder]) or 'nothing of ours'}")
    assert bad == []


def test_the_layer_scan_sees_imports_strings_and_relative_imports(tmp_path, monkeypatch):
    """The rule cannot be bypassed: a core module reaching outward by an import, a relative
    import, a "pkg.mod:attr" string or an import_module literal is caught."""
    src = ("import importlib\n"
           "from tfpipe.orchestrators import local\n"
           "from ..components import trainer\n"
           "RUNNER = 'tfpipe.orchestrators.local:LocalRunner'\n"
           "OLD = 'orchestrators.local:LocalRunner'\n"
           "def f():\n    return importlib.import_module('tfpipe.tracking.runs')\n")
    d = tmp_path / "pipeline" / "sub"
    d.mkdir(parents=True)
    (d / "m.py").write_text(src)
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    found = {(mod, how) for _, mod, how in references(str(d / "m.py"))}
    assert {("tfpipe.orchestrators", "import"), ("tfpipe.components", "relative import"),
            ("tfpipe.orchestrators.local", "string"), ("orchestrators.local", "old-name string"),
            ("tfpipe.tracking.runs", "string")} <= found
    assert {layer_of(m) for m, _ in found if layer_of(m)} >= {"orchestrators", "components", "tracking"}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_heavy_libraries_are_imported_inside_functions_only(folder):
    bad = [f"{os.path.relpath(p, REPO)}:{line} imports {mod} at module level"
           for p in _modules(folder) for line, mod, _ in references(p, top_level_only=True)
           if mod.split(".")[0] in HEAVY]
    assert bad == []


PUBLIC = {  # names users write; each package's __all__ must offer at least these
    "tfpipe": {"Pipeline", "component", "Input", "Output", "ModuleFile", "Examples", "ExampleStatistics",
               "Schema", "Model", "ModelBlessing", "String", "Integer", "Float", "Boolean", "current",
               "compile_pipeline"},
    "tfpipe.components": {"ExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
                          "Transform", "Trainer", "Tuner", "Evaluator", "Resolver", "InfraValidator", "Pusher",
                          "BulkInferrer"},
    "tfpipe.orchestrators.local": {"LocalRunner"},
    "tfpipe.cli": {"main"},
    "tfpipe.v1": {"components", "dsl", "utils"},
}


@pytest.mark.parametrize("package", sorted({pkg for pkg in PACKAGE_DIR} | {"tfpipe.orchestrators.local",
                                                                           "tfpipe.orchestrators.beam",
                                                                           "tfpipe.orchestrators.airflow",
                                                                           "tfpipe.orchestrators.kubeflow"}))
def test_every_package_declares_a_public_api_that_resolves(package):
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    assert isinstance(names, list) and names, f"{package}: __all__ is missing or empty"
    for name in names:  # a name of the package, or a module of it
        assert hasattr(mod, name) or importlib.util.find_spec(f"{package}.{name}"), f"{package}.__all__: {name}"
    assert PUBLIC.get(package, set()) <= set(names), PUBLIC[package] - set(names)
    src = open(mod.__file__).read()
    defined = {n.id if isinstance(n, ast.Name) else n.name for node in ast.parse(src).body
               for n in ([*node.targets] if isinstance(node, ast.Assign) else
                         [node] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [])
               if isinstance(n, (ast.Name, ast.FunctionDef, ast.ClassDef))}
    imported = {a.asname or a.name for node in ast.parse(src).body if isinstance(node, ast.ImportFrom)
                for a in node.names}
    public = {n for n in defined | imported if not n.startswith("_") and n != "annotations"}
    assert public <= set(names), f"{package}: public names missing from __all__: {sorted(public - set(names))}"
