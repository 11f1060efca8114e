"""What a served model takes, read from its SavedModel, and JSON requests turned into the
serialized tf.Examples its signatures parse.

A model that follows tfpipe's Model contract (``components/model_export.py``) has
signatures taking one input, ``examples`` (``tf.string [None]``, serialized raw
tf.Example), that parse them with ``tf.io.parse_example``. The raw feature spec (names,
dtypes, fixed or variable length, defaults) is read from that parse op in
``saved_model.pb``, so any pushed version, old or new, tells the server how to build its
input: nothing is stored beside the model and nothing can drift from what it parses.

JSON values are checked against the spec: a float feature takes JSON numbers, an int64
feature whole numbers, a string feature strings (or ``{"b64": ...}``); ``null`` is a
missing value (allowed where the model parses the feature as variable length or with a
default). A missing or unknown feature, or a value of the wrong type, raises
``RequestError`` naming the field (``instances[2].island``) and what was expected.
"""
from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass, field

__all__ = ["FeatureSpec", "ModelInfo", "RequestError", "SpecError", "read_model_info", "to_examples",
           "from_examples", "json_safe", "warm_up_example", "excerpt"]

FLOAT, INT, BYTES = "float", "int64", "string"
_DTYPE = {1: FLOAT, 9: INT, 7: BYTES}  # tensorflow DataType enum: DT_FLOAT, DT_INT64, DT_STRING
_FLOAT32_MAX = 3.4028234663852886e38  # a float feature is parsed as float32
EXCERPT = 80  # characters of a client's input an error message repeats, at most
_EXPECT = {FLOAT: "a number (float)", INT: "a whole number (int64)", BYTES: "a string (or {\"b64\": ...})"}


class RequestError(ValueError):
    """A request the model cannot take (HTTP 400): what was expected, what was found, where."""


class SpecError(RuntimeError):
    """The SavedModel cannot be read as a served model."""


@dataclass
class FeatureSpec:
    name: str
    dtype: str  # float | int64 | string
    kind: str  # "var_len" | "fixed_len"
    shape: tuple[int, ...] = ()
    default: list | None = None  # a FixedLen feature's default (None: required)

    @property
    def optional(self) -> bool:
        return self.kind == "var_len" or self.default is not None

    def describe(self) -> str:
        n = "" if self.kind == "var_len" else f", shape {list(self.shape)}"
        return f"{self.dtype} ({self.kind}{n}{', required' if not self.optional else ''})"


@dataclass
class ModelInfo:
    """A SavedModel's signatures and, for those that parse tf.Examples, their raw features."""
    path: str
    signature_defs: dict = field(default_factory=dict)  # name -> SignatureDef proto
    parse_specs: dict = field(default_factory=dict)  # signature name -> {feature: FeatureSpec}
    label_keys: list = field(default_factory=list)  # parsed by transform_features but not served
    class_names: list | None = None

    def example_signature(self, name: str) -> bool:
        """True when signature ``name`` takes one ``tf.string`` input (serialized examples)."""
        sig = self.signature_defs.get(name)
        return sig is not None and len(sig.inputs) == 1 and next(iter(sig.inputs.values())).dtype == 7

    def input_name(self, name: str) -> str:
        return next(iter(self.signature_defs[name].inputs))

    def outputs(self, name: str) -> list[str]:
        return sorted(self.signature_defs[name].outputs)

    def output_width(self, name: str, output: str) -> int | None:
        dims = self.signature_defs[name].outputs[output].tensor_shape.dim
        return int(dims[1].size) if len(dims) == 2 and dims[1].size > 0 else None


def _const(fn_nodes: dict, ref: str):
    """The value of the Const node an op input names (``node:output:0`` or ``node:0``)."""
    import tensorflow as tf
    node = fn_nodes.get(ref.split(":")[0].lstrip("^"))
    while node is not None and node.op == "Identity":
        node = fn_nodes.get(node.input[0].split(":")[0])
    if node is None or node.op != "Const":
        raise SpecError(f"the parse op's input {ref!r} is not a constant")
    return tf.make_ndarray(node.attr["value"].tensor)


def _parse_op(start_nodes, library: dict):
    """Breadth-first through the functions a signature calls: the first ParseExampleV2 op
    and the nodes of the function holding it."""
    seen, queue = set(), [n.attr["f"].func.name for n in start_nodes if "f" in n.attr]
    while queue:
        fname = queue.pop(0)
        if fname in seen or fname not in library:
            continue
        seen.add(fname)
        fn = library[fname]
        nodes = {n.name: n for n in fn.node_def}
        for n in fn.node_def:
            if n.op == "ParseExampleV2":
                return n, nodes
        for n in fn.node_def:
            for key in ("f", "then_branch", "else_branch", "body"):
                if key in n.attr and n.attr[key].func.name:
                    queue.append(n.attr[key].func.name)
    return None, None


def _spec_of(op, nodes) -> dict[str, FeatureSpec]:
    sparse_keys = [k.decode() for k in _const(nodes, op.input[2]).reshape(-1).tolist()]
    dense_keys = [k.decode() for k in _const(nodes, op.input[3]).reshape(-1).tolist()]
    sparse_types = list(op.attr["sparse_types"].list.type)
    dense_types = list(op.attr["Tdense"].list.type)
    dense_shapes = [tuple(int(d.size) for d in s.dim) for s in op.attr["dense_shapes"].list.shape]
    out = {}
    for k, t in zip(sparse_keys, sparse_types):
        out[k] = FeatureSpec(k, _DTYPE.get(t, f"dtype {t}"), "var_len")
    for i, (k, t) in enumerate(zip(dense_keys, dense_types)):
        default = _const(nodes, op.input[5 + i]).reshape(-1).tolist()
        default = [d.decode() if isinstance(d, bytes) else d for d in default] or None
        out[k] = FeatureSpec(k, _DTYPE.get(t, f"dtype {t}"), "fixed_len", dense_shapes[i], default)
    return out


def read_model_info(model_dir: str) -> ModelInfo:
    """Signatures and parse specs of the SavedModel at ``model_dir`` (reads saved_model.pb)."""
    from tensorflow.core.protobuf import saved_model_pb2
    pb = os.path.join(model_dir, "saved_model.pb")
    if not os.path.isfile(pb):
        found = sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else "nothing"
        raise SpecError(f"no SavedModel at {model_dir}: expected saved_model.pb there, found {found}")
    sm = saved_model_pb2.SavedModel()
    try:
        with open(pb, "rb") as f:
            sm.ParseFromString(f.read())
    except Exception as e:  # a truncated or foreign file
        raise SpecError(f"{pb} is not a SavedModel: {e}") from None
    if not sm.meta_graphs:
        raise SpecError(f"{pb} holds no meta graph")
    mg = sm.meta_graphs[0]
    info = ModelInfo(model_dir, dict(mg.signature_def))
    library = {f.signature.name: f for f in mg.graph_def.library.function}
    top = {n.name: n for n in mg.graph_def.node}
    for name, sig in mg.signature_def.items():
        if not info.example_signature(name):
            continue
        starts = [top[t.name.split(":")[0]] for t in sig.outputs.values() if t.name.split(":")[0] in top]
        op, nodes = _parse_op(starts, library)
        if op is not None:
            info.parse_specs[name] = _spec_of(op, nodes)
    serve = info.parse_specs.get("serving_default", {})
    full = info.parse_specs.get("transform_features", {})
    info.label_keys = sorted(set(full) - set(serve))
    info.class_names = _class_names(model_dir, info)
    return info


def _class_names(model_dir: str, info: ModelInfo) -> list[str] | None:
    """The label's vocabulary, when the model ships it as an asset named after the label
    (TFT's ``compute_and_apply_vocabulary(..., vocab_filename=LABEL)``) and its size matches
    the classifier's output width; otherwise None (classes are then named by index)."""
    if "serving_default" not in info.signature_defs or len(info.label_keys) != 1:
        return None
    outs = info.outputs("serving_default")
    width = info.output_width("serving_default", outs[0]) if len(outs) == 1 else None
    path = os.path.join(model_dir, "assets", info.label_keys[0])
    if not width or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        names = [line.rstrip("\n") for line in f]
    return names if len(names) == width else None


# -- JSON -> tf.Example ----------------------------------------------------------------------
def excerpt(text, limit: int = EXCERPT) -> str:
    """A client's string as an error message repeats it: quoted, at most ``limit`` characters
    (then "..."), escapes for what is not printable ASCII."""
    s = text if isinstance(text, str) else str(text)
    return ascii(s[:limit]) + ("..." if len(s) > limit else "")


def excerpts(names, limit: int = 5) -> str:
    """A few of a client's names (feature names, keys), each an excerpt."""
    names = list(names)
    shown = ", ".join(excerpt(n, 40) for n in names[:limit])
    return f"[{shown}{f', ... ({len(names)} in all)' if len(names) > limit else ''}]"


def _kind_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {v!r}".lower()
    if isinstance(v, int):
        digits = len(str(abs(v)))
        return f"number {v!r}" if digits <= 20 else f"a whole number of {digits} digits"
    if isinstance(v, float):
        return f"number {v!r}"
    if isinstance(v, str):
        return f"string {excerpt(v, 40)}"
    if isinstance(v, list):
        return "a list"
    return f"an object with keys {excerpts(sorted(v))}" if isinstance(v, dict) else type(v).__name__


def _values(spec: FeatureSpec, value, where: str) -> list:
    vals = value if isinstance(value, list) else [value]
    out = []
    for i, v in enumerate(vals):
        at = f"{where}[{i}]" if isinstance(value, list) else where
        if spec.dtype == FLOAT:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RequestError(f"{at}: expected {_EXPECT[FLOAT]}, found {_kind_of(v)}")
            try:
                f = float(v)
            except OverflowError:  # a whole number beyond any float
                f = None
            # NaN and the infinities (JSON's NaN, Infinity) pass, as in TF Serving; a finite
            # number float32 cannot hold would silently become an infinity
            if f is None or math.isfinite(f) and abs(f) > _FLOAT32_MAX:
                raise RequestError(f"{at}: expected {_EXPECT[FLOAT]} within float32's range (about 3.4e38), "
                                   f"found {_kind_of(v)}")
            out.append(f)
        elif spec.dtype == INT:
            if isinstance(v, float) and v.is_integer() and math.isfinite(v):
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise RequestError(f"{at}: expected {_EXPECT[INT]}, found {_kind_of(v)}")
            if not -2**63 <= v < 2**63:
                raise RequestError(f"{at}: {v} does not fit in int64")
            out.append(v)
        elif spec.dtype == BYTES:
            if isinstance(v, dict) and set(v) == {"b64"} and isinstance(v["b64"], str):
                try:
                    out.append(base64.b64decode(v["b64"], validate=True))
                except ValueError:
                    raise RequestError(f"{at}: 'b64' holds invalid base64") from None
            elif isinstance(v, str):
                try:
                    out.append(v.encode("utf-8"))
                except UnicodeEncodeError as e:  # JSON's "\ud800": a lone surrogate, not a character
                    raise RequestError(f"{at}: expected a string of Unicode characters, found a lone surrogate "
                                       f"(\\u{ord(v[e.start]):04x}) at character {e.start}; send bytes that are "
                                       f"not text as {{\"b64\": ...}}") from None
            else:
                raise RequestError(f"{at}: expected {_EXPECT[BYTES]}, found {_kind_of(v)}")
        else:
            raise RequestError(f"{at}: the model parses this feature as {spec.dtype}, which JSON cannot feed")
    if spec.kind == "fixed_len":
        n = 1
        for d in spec.shape:
            n *= d
        if len(out) != n:
            raise RequestError(f"{where}: expected {n} value(s) (fixed length, shape {list(spec.shape)}), "
                               f"found {len(out)}")
    return out


def _b64_example(value, where: str) -> bytes:
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (ValueError, TypeError):
        raise RequestError(f"{where}: 'b64' holds invalid base64") from None


def to_examples(rows: list, spec: dict[str, FeatureSpec], where: str, input_name: str = "examples",
                ignore: tuple = (), rows_out: list | None = None) -> list[bytes]:
    """Serialized tf.Examples from JSON rows: each row a ``{feature: value}`` object, or a
    serialized tf.Example as ``{"b64": ...}`` (also under the signature's input name).
    Every feature of ``spec`` must be present (``null`` for a missing value where the model
    allows one); features named in ``ignore`` (the label) are dropped; others are refused.
    ``rows_out`` receives each row's checked values (``{feature: [values] | None}``; a
    ``{"b64"}`` row as None, to be read back with ``from_examples`` if needed)."""
    from tensorflow.core.example import example_pb2
    out = []
    for i, row in enumerate(rows):
        at = f"{where}[{i}]"
        if isinstance(row, dict) and input_name in row and input_name not in spec and len(row) == 1:
            row, at = row[input_name], f"{at}.{input_name}"
        if isinstance(row, dict) and set(row) == {"b64"}:
            out.append(_b64_example(row, at))
            if rows_out is not None:
                rows_out.append(None)
            continue
        if not isinstance(row, dict):
            raise RequestError(f"{at}: expected an object of raw features {{\"{next(iter(spec), 'feature')}\": "
                               f"value, ...}} or {{\"b64\": serialized tf.Example}}, found {_kind_of(row)}")
        unknown = sorted(k for k in row if k not in spec and k not in ignore)
        if unknown:
            raise RequestError(f"{at}: unknown feature(s) {excerpts(unknown)}; the model takes {sorted(spec)}")
        ex = example_pb2.Example()
        feats = ex.features.feature
        norm = {}
        for name, fs in spec.items():
            if name not in row:
                continue
            v = row[name]
            if v is None or v == []:
                if not fs.optional:
                    raise RequestError(f"{at}.{name}: expected {_EXPECT.get(fs.dtype, fs.dtype)}, found "
                                       f"{_kind_of(v)}; the model parses {name!r} with a fixed length and no "
                                       f"default, so it cannot be missing")
                continue
            vals = _values(fs, v, f"{at}.{name}")
            norm[name] = vals
            f = feats[name]
            if fs.dtype == FLOAT:
                f.float_list.value.extend(vals)
            elif fs.dtype == INT:
                f.int64_list.value.extend(vals)
            else:
                f.bytes_list.value.extend(vals)
        missing = [n for n in spec if n not in row]
        if missing:
            fs = spec[missing[0]]
            raise RequestError(f"{at}: missing feature(s) {missing}: {missing[0]!r} expects "
                               f"{_EXPECT.get(fs.dtype, fs.dtype)} (null for a missing value"
                               + (")" if fs.optional else "; it is required)"))
        out.append(ex.SerializeToString())
        if rows_out is not None:
            rows_out.append({n: norm.get(n) for n in spec})
    return out


def from_examples(records: list[bytes], spec: dict[str, FeatureSpec]) -> list[dict]:
    """The features of serialized tf.Examples as JSON-able rows (for the request log)."""
    from tensorflow.core.example import example_pb2
    rows = []
    for r in records:
        ex = example_pb2.Example.FromString(r)
        row = {}
        for name, _fs in spec.items():
            f = ex.features.feature.get(name)
            if f is None:
                row[name] = None
                continue
            which = f.WhichOneof("kind")
            vals = list(getattr(f, which).value) if which else []
            if which == "bytes_list":
                vals = [v.decode("utf-8", errors="replace") for v in vals]
            row[name] = vals or None
        rows.append(row)
    return rows


def warm_up_example(spec: dict[str, FeatureSpec]) -> bytes:
    """A serialized tf.Example that ``spec`` parses: every feature present with zeros or
    empty strings of its fixed length (one value when variable length)."""
    from tensorflow.core.example import example_pb2
    ex = example_pb2.Example()
    for name, fs in spec.items():
        n = 1
        for d in fs.shape:
            n *= d
        f = ex.features.feature[name]
        if fs.dtype == FLOAT:
            f.float_list.value.extend([0.0] * n)
        elif fs.dtype == INT:
            f.int64_list.value.extend([0] * n)
        else:
            f.bytes_list.value.extend([b""] * n)
    return ex.SerializeToString()


def json_safe(x):
    """NaN and infinities as TF Serving writes them (``NaN``, ``Infinity``) are valid for
    Python's json module; bytes become ``{"b64": ...}``."""
    if isinstance(x, bytes):
        return {"b64": base64.b64encode(x).decode()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return x
