"""Dependencies point inward only: pipeline/ imports neither components/ nor orchestrators/;
components/ never import orchestrators/; orchestrators never import components/.
And nothing heavy is imported at module level in the core or the component modules."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORBIDDEN = {"pipeline": {"components", "orchestrators", "examples"},
             "components": {"orchestrators", "examples"},
             "orchestrators": {"components", "examples"}}
HEAVY = {"tensorflow", "tensorflow_data_validation", "tensorflow_transform", "tensorflow_model_analysis",
         "apache_beam", "tfx_bsl", "keras", "keras_tuner", "mlflow", "kfp", "airflow", "google"}


def _modules(pkg):
    for d, _, files in os.walk(os.path.join(REPO, pkg)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(d, f)


def _layer(module: str) -> str:
    """The layer (repository folder) of an absolute module name; tfpipe.* maps to folders."""
    parts = module.split(".")
    if parts[0] != "tfpipe":
        return parts[0]
    return parts[1] if len(parts) > 1 and parts[1] in ("components", "orchestrators") else "pipeline"


def _imports(path, top_level_only=False):
    tree = ast.parse(open(path).read(), filename=path)
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, _layer(a.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, _layer(node.module)


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_no_import_points_outward(pkg):
    bad = [f"{os.path.relpath(p, REPO)}:{line} imports {mod}"
           for p in _modules(pkg) for line, mod in _imports(p) if mod in FORBIDDEN[pkg]]
    assert bad == []


@pytest.mark.parametrize("pkg", ["pipeline", "components"])
def test_heavy_libraries_are_imported_inside_functions_only(pkg):
    bad = [f"{os.path.relpath(p, REPO)}:{line} imports {mod} at module level"
           for p in _modules(pkg) for line, mod in _imports(p, top_level_only=True) if mod in HEAVY]
    assert bad == []


def test_every_package_declares_its_public_api():
    for pkg in ("pipeline", "components", "orchestrators"):
        src = open(os.path.join(REPO, pkg, "__init__.py")).read()
        assert "__all__" in src, pkg
