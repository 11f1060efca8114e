"""Pipeline parameters: node parameters an orchestrator exposes by name
(``<node>__<parameter>``, e.g. Airflow's ``dag_run.conf`` or a KFP pipeline's inputs; the
command line's ``Node.param`` spelling is accepted everywhere too) and applies to the IR
before its nodes run, and the keyword arguments of a pipeline file's ``create_pipeline()``.

Values given as text (``tfpipe run -P NAME=VALUE``) are parsed into the declared type:
``int``, ``float``, ``bool`` (true/false/1/0), ``str`` as it is, ``list``/``dict`` as JSON.
The values given for a run are recorded in the IR (``pipeline.parameters``, spelled
``name`` for a keyword and ``Node.param`` for a node parameter) and from there on the run.

Types come from the IR's ``parameter_specs`` (the component's declared types), never from
the values: an ``int`` parameter takes an int, a ``float`` one an int or a float (stored as
float), ``str``/``bool``/``list``/``dict`` their own kind. An IR recorded before specs
existed (ir_version 1) falls back to the kind of the compiled value."""
from __future__ import annotations

import copy

__all__ = ["ParameterError", "SEP", "parameter_name", "pipeline_parameters", "declared_parameters",
           "apply_parameters", "check_value", "TYPE_NAMES", "canonical_name", "display_name", "parse_text",
           "keyword_types", "recorded_parameters", "parse_assignments"]

SEP = "__"
TYPE_NAMES = ("int", "float", "str", "bool", "list", "dict")


class ParameterError(ValueError):
    """A pipeline parameter names no node parameter of the IR, or has the wrong type."""


def parameter_name(node_id: str, param: str) -> str:
    """The pipeline-level name of a node parameter: ``ExampleGen__label_key``."""
    return f"{node_id}{SEP}{param}"


def canonical_name(name: str) -> str:
    """``Trainer.learning_rate`` (the command line's spelling) -> ``Trainer__learning_rate``;
    a name already spelled with ``__`` is returned as it is. Node ids may hold dots, so
    the last dot separates the parameter."""
    if SEP in name or "." not in name:
        return name
    node, _, param = name.rpartition(".")
    return parameter_name(node, param)


def display_name(name: str) -> str:
    """``Trainer__learning_rate`` -> ``Trainer.learning_rate`` (how runs show it)."""
    if SEP not in name:
        return name
    node, _, param = name.rpartition(SEP)
    return f"{node}.{param}"


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_text(type_name: str | None, text: str):
    """A value given as text, as the declared type; raises ValueError saying what was
    expected. ``None`` (no declared type) keeps the text."""
    t = text.strip() if type_name in ("int", "float", "bool") else text
    if type_name is None or type_name == "str":
        return text
    if type_name == "int":
        try:
            return int(t)
        except ValueError:
            raise ValueError(f"expected int, found {text!r}") from None
    if type_name == "float":
        try:
            return float(t)
        except ValueError:
            raise ValueError(f"expected float, found {text!r}") from None
    if type_name == "bool":
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise ValueError(f"expected bool (true/false/1/0), found {text!r}")
    import json
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"expected {type_name} as JSON, found {text!r} (column {e.colno}: {e.msg})") from None
    want = {"list": list, "dict": dict}[type_name]
    if not isinstance(v, want):
        raise ValueError(f"expected {type_name} as JSON, found {type(v).__name__} {text!r}")
    return v


def _annotation_type(annotation) -> str | None:
    import typing
    if isinstance(annotation, str):  # from __future__ import annotations: a string
        a = annotation.replace(" ", "")
        for part in a.split("|"):
            base = part.split("[")[0]
            if base in ("None", "Optional"):
                continue
            base = {"List": "list", "Dict": "dict", "tuple": "list", "Tuple": "list"}.get(base, base)
            return base if base in TYPE_NAMES else None
        return None
    origin = typing.get_origin(annotation)
    if origin is not None and origin not in (list, dict, tuple):
        args = [x for x in typing.get_args(annotation) if x is not type(None)]
        return _annotation_type(args[0]) if len(args) == 1 else None
    annotation = origin or annotation
    if annotation is tuple:
        return "list"
    return annotation.__name__ if isinstance(annotation, type) and annotation.__name__ in TYPE_NAMES else None


def keyword_types(fn) -> dict[str, tuple[str | None, object]]:
    """The keyword arguments of a pipeline file's ``create_pipeline`` as ``name ->
    (type, default)``: the type from the annotation, else from the default's kind
    (``None`` when neither tells: the value stays text)."""
    import inspect
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        t = _annotation_type(p.annotation) if p.annotation is not p.empty else None
        default = None if p.default is p.empty else p.default
        if t is None and default is not None:
            t = _kind(default)
        out[name] = (t, default)
    return out


def recorded_parameters(ir: dict) -> dict:
    """The parameters given for a run of ``ir`` (keywords and ``Node.param`` values)."""
    return dict(ir["pipeline"].get("parameters") or {})


def _kind(value) -> str | None:
    for t, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list"),
                    (dict, "dict")):
        if isinstance(value, t):
            return name
    return None


def _type_of(node: dict, param: str) -> str | None:
    spec = (node.get("parameter_specs") or {}).get(param)
    if spec is not None:
        return spec["type"]
    return _kind(node["parameters"].get(param))


def pipeline_parameters(ir: dict) -> dict[str, tuple[str, str, object, str | None]]:
    """Every parameter set on a node in the IR, as ``name -> (node, param, compiled value,
    declared type)``: the pipeline parameters an orchestrator exposes (Airflow conf, KFP
    inputs)."""
    out = {}
    for n in ir["nodes"]:
        for k, v in n["parameters"].items():
            out[parameter_name(n["id"], k)] = (n["id"], k, v, _type_of(n, k))
    return out


def declared_parameters(ir: dict) -> dict[str, tuple[str, str, str | None]]:
    """Every parameter any node takes (set or not), ``name -> (node, param, declared type)``."""
    out = {}
    for n in ir["nodes"]:
        for k in {**(n.get("parameter_specs") or {}), **n["parameters"]}:
            out[parameter_name(n["id"], k)] = (n["id"], k, _type_of(n, k))
    return out


def check_value(type_name: str | None, value):
    """``value`` as the declared type (an int for a float parameter becomes a float), or
    raise TypeError saying what was expected."""
    if type_name is None or value is None:
        return value
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool),
          "list": lambda v: isinstance(v, (list, tuple)),
          "dict": lambda v: isinstance(v, dict)}[type_name]
    if not ok(value):
        raise TypeError(f"expected {type_name}, found {type(value).__name__} {value!r}")
    if type_name == "float":
        return float(value)
    if type_name == "list":
        return list(value)
    return value


def apply_parameters(ir: dict, values: dict | None, record: bool = False) -> dict:
    """A copy of ``ir`` with pipeline parameters (``Node__param`` or ``Node.param``) applied
    to its nodes. A value that changes the node's compiled value (or every value, with
    ``record``) is recorded in ``pipeline.parameters`` as ``Node.param``: what the run shows."""
    if not values:
        return ir
    known = declared_parameters(ir)
    ir = copy.deepcopy(ir)
    nodes = {n["id"]: n for n in ir["nodes"]}
    given = ir["pipeline"].setdefault("parameters", {})
    for raw, value in values.items():
        name = canonical_name(raw)
        if name not in known:
            raise ParameterError(
                f"pipeline parameter {raw!r} of pipeline {ir['pipeline']['name']}: no such parameter; "
                f"expected one of {sorted(display_name(k) for k in known)} (NODE.PARAM, or NODE{SEP}PARAM)")
        node, param, type_name = known[name]
        try:
            value = check_value(type_name, value)
        except TypeError as e:
            raise ParameterError(f"pipeline parameter {raw!r} (node {node}, parameter {param}): {e}") from None
        if record or nodes[node]["parameters"].get(param, _MISSING) != value:
            given[display_name(name)] = value
        nodes[node]["parameters"][param] = value
    if not given:
        ir["pipeline"].pop("parameters")
    return ir


_MISSING = object()


def _split_values(type_name: str | None, text: str) -> list[str]:
    """The alternatives of a sweep axis: ``0.001,0.01`` -> two values. A list or dict value
    is one JSON value (never split); a str value in double quotes (``a,"b,c"``, as in CSV)
    is one value holding a comma."""
    if type_name in ("list", "dict"):
        return [text]
    if type_name in (None, "str") and '"' in text:  # CSV quoting: a,"b,c" -> a | b,c
        import csv
        return next(csv.reader([text]))
    return text.split(",") if "," in text else [text]


def parse_assignments(pairs: list[str], keywords: dict[str, tuple[str | None, object]],
                      declared: dict[str, tuple[str, str, str | None]], where: str = "") -> dict[str, list]:
    """``-P NAME=VALUE`` pairs as ``{name: [value, ...]}`` in the order given, each value
    parsed into its declared type; more than one value makes a sweep axis. ``NAME`` is a
    ``create_pipeline()`` keyword (``keywords``: see :func:`keyword_types`) or a node
    parameter ``Node.param`` (``declared``: see :func:`declared_parameters`), recorded as
    spelled here (``Node.param``). Raises ParameterError naming the parameter, the
    expected type and the value (or the choices)."""
    out: dict[str, list] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"-P {pair!r}: expected NAME=VALUE (a create_pipeline() keyword, e.g. "
                                 f"train_steps=1000, or NODE.PARAM, e.g. Trainer.train_steps=1000)")
        canon = canonical_name(name)
        if SEP not in canon and name in keywords:
            type_name, label = keywords[name][0], name
            what = f"create_pipeline() keyword {name}{' of ' + where if where else ''}"
        elif canon in declared:
            node, param, type_name = declared[canon]
            label, what = display_name(canon), f"parameter {param} of node {node}"
        elif SEP in canon and any(node == canon.rpartition(SEP)[0] for node, _, _ in declared.values()):
            node = canon.rpartition(SEP)[0]
            raise ParameterError(f"-P {name}: node {node} has no parameter {canon.rpartition(SEP)[2]!r}; expected one "
                                 f"of {', '.join(sorted(p for n, p, _ in declared.values() if n == node))}")
        else:
            raise ParameterError(
                f"-P {name}: no such parameter; expected a create_pipeline() keyword "
                f"({', '.join(keywords) or 'none'}) or NODE.PARAM "
                f"({', '.join(sorted(display_name(k) for k in declared))})")
        if label in out:
            raise ParameterError(f"-P {name}: given twice; give a sweep as one comma list ({name}=A,B)")
        values = []
        for t in _split_values(type_name, text):
            try:
                values.append(parse_text(type_name, t))
            except ValueError as e:
                raise ParameterError(f"-P {name}={text}: {what}: {e}") from None
        out[label] = values
    return out
