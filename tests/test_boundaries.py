"""No module reaches into another object's or module's private names: in the package folders,
an attribute ``X._name`` (one leading underscore, not a dunder) is read or written only on
``self``, ``cls`` or ``super()``, and ``from M import _name`` names only public names. What
another module needs is a public method or function (the metadata store's queries are
methods of ``MetadataStore``). The exceptions are other libraries' underscore names that are
their documented API, or an internal we rely on knowingly; each is listed with its reason."""
import ast
import os

from tests.test_layers import FOLDER, REPO

# other libraries' underscore names that are their documented API, allowed anywhere -> why
LIBRARY = {
    "os._exit": "the standard library's exit without clean-up, for a forked child",
    "sys._getframe": "the standard library's documented frame access",
    "argparse._SubParsersAction": "what add_subparsers() returns; argparse has no public name for its type",
}
# (file, "X._name" as written) -> why it is allowed there
ALLOWED = {
    ("orchestrators/beam/cluster.py", "runner._num_workers"): "Beam's FnApiRunner takes its worker count only "
                                                               "in run(); a job service must set it (Beam 2.69)",
    ("orchestrators/kubeflow/submit.py", "job._gca_resource._pb"): "the Vertex AI SDK exposes a job's resource "
                                                                   "proto only there",
    ("orchestrators/kubeflow/submit.py", "job._gca_resource"): "the Vertex AI SDK exposes a job's resource "
                                                               "proto only there",
}
# The SQL source's fast MariaDB/MySQL read takes rows off PyMySQL's socket (``_mysql_lines``):
# PyMySQL (pinned in constraints.txt) has no public streaming API below one object per row.
# Every internal is looked up before use, with the driver's own fetch as the fallback, and
# tests/pipeline/test_sql_source.py checks that the fast path is taken.
_PYMYSQL = "PyMySQL's connection internals for the SQL source's fast read, checked before use, fallback the driver"
ALLOWED.update({("pipeline/sources/sql.py", what): _PYMYSQL for what in (
    "raw._current_timeout", "raw._force_close", "raw._next_seq_id", "raw._read_timeout", "raw._sock",
    "result._check_packet_is_eof")})
_BEAM_TFRECORD = ("Beam's TFRecord sink and framing (Beam pinned in constraints.txt): Transform writes a batch "
                  "of records per element through them; Beam has no public sink that takes a batch")
ALLOWED[("components/transform.py", "tfrecordio._TFRecordSink")] = _BEAM_TFRECORD
ALLOWED[("components/transform.py", "tfrecordio._TFRecordUtil")] = _BEAM_TFRECORD
ALLOWED[("pipeline/sources/sql.py", "res.cursor_strategy._rowbuffer")] = (
    "the row SQLAlchemy's cursor result fetched on creation, taken back before the fast read")
OWN = {"self", "cls"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _files():
    # the package's folders, and the benchmarks and examples that use it as a user would
    for folder in [*sorted(FOLDER), "benchmarks", "examples"]:
        for d, _, files in os.walk(os.path.join(REPO, folder)):
            for f in sorted(files):
                if f.endswith(".py"):
                    yield os.path.relpath(os.path.join(d, f), REPO)


def _is_own(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in OWN
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def reach_ins(path: str) -> list[tuple[int, str]]:
    """(line, what) of every private name this file takes from another object or module."""
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and not _is_own(node.value):
            found.append((node.lineno, f"{ast.unparse(node)}"))
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                # ``from . import _module``: a package's private module, imported by its sibling
                if _private(alias.name) and not (node.level == 1 and node.module is None):
                    found.append((node.lineno, f"from {'.' * node.level}{node.module or ''} import {alias.name}"))
    return found


def test_no_module_reaches_into_private_names():
    bad = [f"{path}:{line}: {what}" for path in _files() for line, what in reach_ins(path)
           if what not in LIBRARY and (path, what) not in ALLOWED]
    assert not bad, ("private names used from outside their object or module (make what is needed public, "
                     "or allow it in tests/test_boundaries.py with a reason):\n" + "\n".join(bad))


def test_the_allow_list_has_no_stale_entries():
    used = {(path, what) for path in _files() for _, what in reach_ins(path)}
    assert not set(ALLOWED) - used, f"allowed but no longer used: {sorted(set(ALLOWED) - used)}"
