"""The tier marks of tests/conftest.py come from fixture names: a renamed or moved fixture
would silently drop its tests into `make test-fast`. Every name listed must be a fixture
defined where the entry says (a test module, or the conftest.py of a folder)."""
import ast
import os

from tests.conftest import REPO, TIER_FIXTURES


def _fixtures_in(path: str) -> set[str]:
    tree = ast.parse(open(path).read())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
            and any("fixture" in ast.unparse(d) for d in n.decorator_list)}


def test_every_tier_fixture_exists_where_named():
    missing = []
    for marker, entries in TIER_FIXTURES.items():
        for entry in entries:
            where, name = entry.split("::")
            path = os.path.join(REPO, where if where.endswith(".py") else os.path.join(where, "conftest.py"))
            if not os.path.isfile(path) or name not in _fixtures_in(path):
                missing.append((marker, entry))
    assert missing == []


def test_every_xdist_group_fixture_exists_where_named():
    """The same for the fixtures that put test modules in one pytest-xdist group: a renamed one
    would silently make its session fixture once per worker."""
    from tests.conftest import XDIST_GROUPS
    missing = []
    for entry in XDIST_GROUPS:
        where, name = entry.split("::")
        path = os.path.join(REPO, where if where.endswith(".py") else os.path.join(where, "conftest.py"))
        if not os.path.isfile(path) or name not in _fixtures_in(path):
            missing.append(entry)
    assert missing == []
