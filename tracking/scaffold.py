"""``tfpipe init DIR``: a working project from the templates under templates/init/.

Rendering is plain text substitution, never a template engine: a template holds markers
``<<KIND:key>>`` and each is replaced by a literal that a serializer made from the value,
chosen by KIND for the file's language (``py``: repr(), ``yaml``/``toml``/``json``: a JSON
string, which is also a valid YAML double-quoted scalar and a TOML basic string; ``md``: a code
span of an already validated name). User values are validated first (project name, bucket,
CSV column names) and then still only ever reach a file as such a literal, so no quote, ``{{ }}``,
``${{ }}``, ``$( )`` or newline in a value can change what a generated file means.

Files whose name ends in ``.tmpl`` are rendered; others (the bundled CSV) are copied as they
are. A leading ``dot-`` in a template path becomes ``.`` (``dot-github/`` is ``.github/``), so
package data needs no hidden folders. Standard library only: ``tfpipe init`` must start fast.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from dataclasses import dataclass

__all__ = ["InitError", "ProjectSpec", "TEMPLATE_DIR", "ORCHESTRATORS", "render_text", "plan_files", "scaffold",
           "infer_columns", "PROJECT_NAME_PATTERN", "BUCKET_PATTERN", "COLUMN_PATTERN", "tfpipe_requirement"]

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "init")
BUNDLED_DATA = os.path.join(TEMPLATE_DIR, "data", "penguins.csv")
ORCHESTRATORS = ("vertex", "kubeflow", "airflow")

# The project name becomes the pipeline name, a Docker image name and folder names on the
# bucket: lower case so that every one of those accepts it.
PROJECT_NAME_PATTERN = r"[a-z][a-z0-9_-]{0,62}"
# s3:// or gs:// bucket with an optional prefix of plain path segments (no '..', no spaces,
# no '$' that Cloud Build or a shell would expand).
BUCKET_PATTERN = r"(s3|gs)://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/[A-Za-z0-9_-][A-Za-z0-9._-]*)*/?"
# A CSV column becomes a feature key, a Keras input name and a TFT vocabulary file name.
COLUMN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
_DATA_FILE_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,120}\.csv"
_VERSION_PATTERN = r"[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)"
_MISSING = {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"}
_MARKER = re.compile(r"<<(py|yaml|toml|json|md|token):([a-z_]+)>>")
_TOKEN_PATTERN = r"[A-Za-z0-9_.=+-]+"  # what `md` and `token` markers accept: names checked before


class InitError(ValueError):
    """``tfpipe init`` was given something it cannot make a project from (a usage error)."""


def _match(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _literal(kind: str, value) -> str:
    if kind == "py":
        return repr(value)
    if kind in ("yaml", "toml", "json"):
        # JSON escapes every control character and non-ASCII code point: the result is one
        # line and reads back as the same string in YAML (double-quoted) and TOML (basic string)
        return json.dumps(value, ensure_ascii=True)
    if kind in ("md", "token"):
        # languages without a string literal (Markdown, requirements.txt): only a value that is
        # one plain token passes, as a code span or as it is
        if not isinstance(value, str) or not _match(_TOKEN_PATTERN, value):
            raise InitError(f"template marker {kind}: expected a plain token ({_TOKEN_PATTERN}), found {value!r}")
        return f"`{value}`" if kind == "md" else value
    raise InitError(f"unknown template marker kind {kind!r}")


def render_text(text: str, values: dict, where: str = "template") -> str:
    """``text`` with every ``<<KIND:key>>`` marker replaced by the serializer-made literal of
    ``values[key]``. A marker naming no value is an error (nothing is left half-rendered)."""
    def sub(m: re.Match) -> str:
        kind, key = m.group(1), m.group(2)
        if key not in values:
            raise InitError(f"{where}: marker <<{kind}:{key}>> names no value; known: {sorted(values)}")
        return _literal(kind, values[key])
    # one pass over the template's text: a substituted literal is never scanned again
    return _MARKER.sub(sub, text)


def tfpipe_requirement() -> str:
    """``tfpipe==<the version that made the project>``, what its Dockerfile and workflows install."""
    from tfpipe.version import __version__
    if not _match(_VERSION_PATTERN, __version__) or "unknown" in __version__:
        raise InitError(f"tfpipe's version {__version__!r} is not a released version (expected X.Y.Z): install "
                        f"tfpipe (pip install -e . or a wheel) before `tfpipe init`")
    return f"tfpipe=={__version__}"


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def infer_columns(paths: list[str], label: str | None) -> tuple[str, list[str], list[str]]:
    """(label, numeric feature columns, categorical feature columns) from CSV files with one
    header: a column is numeric when every value present parses as a number."""
    header, kinds = None, {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            first = next(reader, None)
            if not first:
                raise InitError(f"--data: {path}: expected a CSV file with a header line, found an empty file")
            if header is None:
                header = first
                bad = [c for c in header if not _match(COLUMN_PATTERN, c)]
                if bad:
                    raise InitError(f"--data: {path}: column name {bad[0]!r} is not usable as a feature key; "
                                    f"expected names matching {COLUMN_PATTERN}")
                if len(set(header)) != len(header):
                    raise InitError(f"--data: {path}: expected distinct column names, found {header}")
                kinds = {c: "number" for c in header}
            elif first != header:
                raise InitError(f"--data: {path}: expected the header of {paths[0]} ({','.join(header)}), "
                                f"found {','.join(first)}")
            rows = 0
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise InitError(f"--data: {path}, line {lineno}: expected {len(header)} columns (as in the "
                                    f"header), found {len(row)}")
                rows += 1
                for c, v in zip(header, row):
                    if v not in _MISSING and not _is_number(v):
                        kinds[c] = "string"
            if rows == 0:
                raise InitError(f"--data: {path}: expected rows after the header, found none")
    if label is None:
        if "species" not in header:
            raise InitError(f"--data: expected --label COLUMN naming the column to predict (one of "
                            f"{', '.join(header)})")
        label = "species"
    if label not in header:
        raise InitError(f"--label {label!r}: expected one of the columns of the data ({', '.join(header)})")
    if kinds[label] != "string":
        raise InitError(f"--label {label!r}: expected a column of class names (text), found a numeric column; "
                        f"the generated model is a classifier")
    features = [c for c in header if c != label]
    if not features:
        raise InitError(f"--data: expected at least one column besides the label {label!r}, found none")
    return label, [c for c in features if kinds[c] == "number"], [c for c in features if kinds[c] == "string"]


def _data_files(data: str | None) -> list[tuple[str, str]]:
    """(source path, name under the project's data/) for the CSV files to copy."""
    if data is None:
        return [(BUNDLED_DATA, "penguins.csv")]
    if os.path.isfile(data):
        if not data.lower().endswith(".csv"):
            raise InitError(f"--data {data}: expected a .csv file or a folder of them, found a file of another kind")
        sources = [data]
    elif os.path.isdir(data):
        sources = sorted(os.path.join(data, f) for f in os.listdir(data)
                         if f.lower().endswith(".csv") and os.path.isfile(os.path.join(data, f)))
        if not sources:
            raise InitError(f"--data {data}: expected a folder holding .csv files, found none in it")
    else:
        raise InitError(f"--data {data}: expected a CSV file or a folder of them, found nothing at that path")
    out = []
    for s in sources:
        name = os.path.basename(s)
        if not _match(_DATA_FILE_PATTERN, name):
            raise InitError(f"--data: file name {name!r} ({s}): expected letters, digits, '.', '_' and '-' "
                            f"ending in .csv ({_DATA_FILE_PATTERN})")
        out.append((s, name))
    return out


@dataclass
class ProjectSpec:
    """The validated values a project's templates receive."""
    name: str
    bucket: str = ""
    orchestrator: str = "vertex"
    requirement: str = ""

    def values(self, label: str, numeric: list[str], categorical: list[str]) -> dict:
        return {"name": self.name, "bucket": self.bucket, "orchestrator": self.orchestrator,
                "requirement": self.requirement, "label": label, "numeric": numeric, "categorical": categorical,
                "cloud_bucket": self.bucket or "gs://REPLACE-WITH-YOUR-BUCKET"}


def default_name(directory: str) -> str:
    base = os.path.basename(os.path.abspath(directory)).lower().replace(" ", "-").replace(".", "-")
    if not _match(PROJECT_NAME_PATTERN, base):
        raise InitError(f"directory name {os.path.basename(os.path.abspath(directory))!r} does not make a project "
                        f"name: expected {PROJECT_NAME_PATTERN}; pass --name NAME")
    return base


def _template_files() -> list[tuple[str, str]]:
    """(template path, project-relative output path) for every file the project gets besides
    its data. The orchestrator changes values (cloudbuild.yaml's _TARGET), not the file set."""
    out = []
    for d, dirs, files in os.walk(TEMPLATE_DIR):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            src = os.path.join(d, f)
            rel = os.path.relpath(src, TEMPLATE_DIR).replace(os.sep, "/")
            if rel.startswith("data/"):
                continue  # data comes from _data_files
            rel = "/".join("." + p[4:] if p.startswith("dot-") else p for p in rel.split("/"))
            out.append((src, rel[:-5] if rel.endswith(".tmpl") else rel))
    return out


def plan_files(orchestrator: str, data_files: list[tuple[str, str]]) -> list[str]:
    """The project-relative paths ``scaffold`` writes."""
    return sorted([rel for _, rel in _template_files()] + [f"data/{n}" for _, n in data_files])


def _check_target(directory: str, files: list[str], force: bool) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InitError(f"{directory}: expected a new or empty directory, found a file")
    if not os.path.isdir(directory):
        return
    present = sorted(os.listdir(directory))
    if not present:
        return
    if not force:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise InitError(f"{directory}: expected a new or empty directory, found {len(present)} entr"
                        f"{'y' if len(present) == 1 else 'ies'} ({shown}); --force writes beside them "
                        f"only when no file of the project exists")
    clash = [rel for rel in files if os.path.lexists(os.path.join(directory, *rel.split("/")))]
    if clash:
        raise InitError(f"{directory}: --force writes only files that do not exist, found "
                        f"{len(clash)} that would be overwritten ({', '.join(clash[:5])})")


def scaffold(directory: str, name: str | None = None, bucket: str = "", orchestrator: str = "vertex",
             data: str | None = None, label: str | None = None, force: bool = False) -> list[str]:
    """Write the project; returns the project-relative paths written."""
    if orchestrator not in ORCHESTRATORS:
        raise InitError(f"--orchestrator {orchestrator!r}: expected one of {', '.join(ORCHESTRATORS)}")
    name = default_name(directory) if name is None else name
    if not _match(PROJECT_NAME_PATTERN, name):
        raise InitError(f"project name {name!r}: expected lower-case letters, digits, '_' and '-', starting with "
                        f"a letter, at most 63 characters ({PROJECT_NAME_PATTERN})")
    bucket = bucket or ""
    if bucket and not _match(BUCKET_PATTERN, bucket):
        raise InitError(f"--bucket {bucket!r}: expected s3://BUCKET or gs://BUCKET with an optional /PREFIX of "
                        f"letters, digits, '.', '_' and '-' ({BUCKET_PATTERN})")
    bucket = bucket.rstrip("/")
    spec = ProjectSpec(name=name, bucket=bucket, orchestrator=orchestrator, requirement=tfpipe_requirement())
    data_files = _data_files(data)
    label, numeric, categorical = infer_columns([s for s, _ in data_files], label)
    templates = _template_files()
    files = plan_files(orchestrator, data_files)
    _check_target(directory, files, force)
    values = spec.values(label, numeric, categorical)
    rendered = []
    for src, rel in templates:  # render everything before writing anything
        with open(src, encoding="utf-8") as f:
            text = f.read()
        rendered.append((rel, render_text(text, values, where=os.path.relpath(src, TEMPLATE_DIR))
                         if src.endswith(".tmpl") else text))
    os.makedirs(directory, exist_ok=True)
    for rel, text in rendered:
        out = os.path.join(directory, *rel.split("/"))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "x", encoding="utf-8") as f:  # "x": never overwrite
            f.write(text)
    os.makedirs(os.path.join(directory, "data"), exist_ok=True)
    for s, n in data_files:
        dst = os.path.join(directory, "data", n)
        if os.path.lexists(dst):
            raise InitError(f"{dst}: exists; --force writes only files that do not exist")
        shutil.copyfile(s, dst)
    return files
