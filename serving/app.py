"""TensorFlow Serving's REST API on Starlette.

    GET  /v1/models/NAME[/versions/V | /labels/L]              model version status
    GET  /v1/models/NAME[/versions/V | /labels/L]/metadata     signatures (GetModelMetadataResponse)
    POST /v1/models/NAME[/versions/V | /labels/L]:predict      {"instances": [...]} or {"inputs": {...}}
    POST /v1/models/NAME[/versions/V | /labels/L]:classify     {"examples": [...], "context": {...}}
    POST /v1/models/NAME[/versions/V | /labels/L]:regress
    GET  /healthz                                             200 when every model serves a version

Request bodies carry raw features as JSON (``{"island": "Biscoe", "body_mass_g": 3750}``) or
serialized tf.Examples as ``{"b64": ...}``; the serving signature parses and transforms
them. Errors are TF Serving's ``{"error": "..."}``: 400 for a bad request (naming the
field and what was expected), 404 for an unknown model, version or label. Without a
version or label a request goes to the ``production`` label when there is one (TF
Serving would take the highest version), else to the highest version.
"""
from __future__ import annotations

import json
import re

from .features import RequestError, json_safe, to_examples
from .manager import NotFound
from .servable import ModelError

__all__ = ["create_app"]

_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<tail>/metadata|:predict|:classify|:regress)?$")


def _json(body, status: int = 200):
    from starlette.responses import Response
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _error(message: str, status: int):
    return _json({"error": message}, status)


def _tolist(arr) -> list:
    """A numpy output as JSON values (bytes as UTF-8 text, or {"b64"} when not text)."""
    if arr.dtype.kind in "OSU":
        def conv(x):
            if isinstance(x, bytes):
                try:
                    return x.decode("utf-8")
                except UnicodeDecodeError:
                    return json_safe(x)
            return [conv(y) for y in x] if isinstance(x, list) else x
        return conv(arr.tolist())
    return arr.tolist()


def _rows_of_columns(inputs, where: str) -> list:
    """The columnar format turned into rows: ``{feature: [value per example]}``."""
    if isinstance(inputs, list):
        return inputs
    if not isinstance(inputs, dict) or not inputs:
        raise RequestError(f"{where}: expected an object mapping each feature to a list with one value per "
                           f"example (or a list of examples)")
    lengths = {}
    for k, v in inputs.items():
        if not isinstance(v, list):
            raise RequestError(f"{where}.{k}: expected a list with one value per example, found "
                               f"{type(v).__name__} {json.dumps(v)[:40]}")
        lengths[k] = len(v)
    if len(set(lengths.values())) != 1:
        raise RequestError(f"{where}: every feature needs one value per example; lengths differ: {lengths}")
    n = next(iter(lengths.values()))
    return [{k: inputs[k][i] for k in inputs} for i in range(n)]


async def _body(request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as e:
        raise RequestError(f"the request body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object, e.g. {\"instances\": [{...}, ...]}")
    return body


class _Api:
    def __init__(self, manager, request_log=None):
        self.manager, self.log = manager, request_log

    async def get(self, request):
        m = _PATH.match(request.path_params["rest"])
        if not m or m["tail"] not in (None, "/metadata"):
            return _error(f"Malformed request: GET {request.url.path}", 404)
        try:
            if m["tail"] == "/metadata":
                return _json(self._metadata(m["name"], m["version"], m["label"]))
            return _json({"model_version_status": self.manager.status(m["name"], m["version"], m["label"])})
        except NotFound as e:
            return _error(str(e), 404)

    def _metadata(self, name, version, label) -> dict:
        from google.protobuf import json_format
        s, _ = self.manager.resolve(name, version, label)
        sigs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True,
                                             including_default_value_fields=True)
                for k, v in sorted(s.info.signature_defs.items())}
        return {"model_spec": {"name": name, "signature_name": "", "version": str(s.version)},
                "metadata": {"signature_def": {"signature_def": sigs}}}

    async def post(self, request):
        m = _PATH.match(request.path_params["rest"])
        if not m or m["tail"] not in (":predict", ":classify", ":regress"):
            return _error(f"Malformed request: POST {request.url.path}; expected "
                          f"/v1/models/NAME[/versions/V|/labels/L]:predict|:classify|:regress", 404)
        try:
            servable, label = self.manager.resolve(m["name"], m["version"], m["label"])
        except NotFound as e:
            return _error(str(e), 404)
        servable.acquire()  # the request finishes on this version, whatever is swapped meanwhile
        try:
            body = await _body(request)
            verb = m["tail"][1:]
            return await getattr(self, verb)(servable, label, body)
        except RequestError as e:
            return _error(str(e), 400)
        except ModelError as e:
            return _error(str(e), 400 if e.bad_input else 500)
        finally:
            servable.release()

    def _signature(self, servable, body) -> str:
        sig = body.get("signature_name") or "serving_default"
        if not isinstance(sig, str) or sig not in servable.info.signature_defs:
            raise RequestError(f"signature_name: model {servable.name} version {servable.version} has no "
                               f"signature {sig!r}; it has {sorted(servable.info.signature_defs)}")
        if not servable.info.example_signature(sig):
            raise RequestError(f"signature_name: {sig!r} takes {sorted(servable.info.signature_defs[sig].inputs)}; "
                               f"this server feeds signatures that take serialized tf.Examples")
        return sig

    async def _run(self, servable, label, sig, rows, where):
        spec = servable.info.parse_specs.get(sig, {})
        checked: list = []
        records = to_examples(rows, spec, where, input_name=servable.info.input_name(sig),
                              ignore=tuple(servable.info.label_keys), rows_out=checked)
        if not records:
            raise RequestError(f"{where}: no examples; expected at least one")
        outs = await servable.run(sig, records)
        return records, checked, outs

    def _log(self, servable, label, sig, records, checked, per_row):
        if self.log is not None and self.log.sample():
            self.log.offer(model=servable.name, version=servable.version, label=label, signature=sig,
                           spec=servable.info.parse_specs.get(sig, {}), rows=checked, records=records,
                           outputs=per_row)

    async def predict(self, servable, label, body):
        sig = self._signature(servable, body)
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows == has_cols:
            raise RequestError("expected exactly one of 'instances' (row format) or 'inputs' (columnar format)"
                               + ("; a request can have either of them but NOT both" if has_rows else ""))
        if has_rows:
            rows = body["instances"]
            if not isinstance(rows, list):
                raise RequestError(f"instances: expected a list of examples, found {type(rows).__name__}")
            where = "instances"
        else:
            rows, where = _rows_of_columns(body["inputs"], "inputs"), "inputs"
        records, checked, outs = await self._run(servable, label, sig, rows, where)
        cols = {k: _tolist(v) for k, v in outs.items()}
        names = sorted(cols)
        per_row = ([cols[names[0]][i] for i in range(len(records))] if len(names) == 1 else
                   [{k: cols[k][i] for k in names} for i in range(len(records))])
        self._log(servable, label, sig, records, checked, per_row)
        if has_rows:
            return _json({"predictions": per_row})
        return _json({"outputs": cols[names[0]] if len(names) == 1 else cols})

    def _examples(self, body) -> list:
        rows = body.get("examples")
        if not isinstance(rows, list):
            raise RequestError("examples: expected a list of examples (objects of raw features), found "
                               + ("nothing" if rows is None else type(rows).__name__))
        ctx = body.get("context") or {}
        if not isinstance(ctx, dict):
            raise RequestError(f"context: expected an object of features, found {type(ctx).__name__}")
        if ctx:
            out = []
            for i, r in enumerate(rows):
                if not isinstance(r, dict):
                    raise RequestError(f"examples[{i}]: expected an object of raw features")
                both = sorted(set(ctx) & set(r))
                if both:
                    raise RequestError(f"examples[{i}]: feature(s) {both} appear in both context and the example")
                out.append({**ctx, **r})
            rows = out
        return rows

    def _single_output(self, servable, sig, verb: str) -> str:
        outs = servable.info.outputs(sig)
        if len(outs) != 1:
            raise RequestError(f"{verb}: signature {sig!r} of model {servable.name} has outputs {outs}; {verb} "
                               f"needs one output of scores")
        return outs[0]

    async def classify(self, servable, label, body):
        sig = self._signature(servable, body)
        out = self._single_output(servable, sig, "classify")
        width = servable.info.output_width(sig, out)
        if width is not None and width < 2:
            raise RequestError(f"classify: signature {sig!r} of model {servable.name} returns one value per "
                               f"example (a regression); use :regress")
        records, checked, outs = await self._run(servable, label, sig, self._examples(body), "examples")
        scores = outs[out].tolist()
        names = servable.info.class_names or [str(i) for i in range(len(scores[0]) if scores else 0)]
        results = [[[names[j], float(s)] for j, s in enumerate(row)] for row in scores]
        self._log(servable, label, sig, records, checked, scores)
        return _json({"results": results})

    async def regress(self, servable, label, body):
        sig = self._signature(servable, body)
        out = self._single_output(servable, sig, "regress")
        width = servable.info.output_width(sig, out)
        if width is not None and width != 1:
            raise RequestError(f"regress: signature {sig!r} of model {servable.name} returns {width} scores per "
                               f"example (a classifier); use :classify or :predict")
        records, checked, outs = await self._run(servable, label, sig, self._examples(body), "examples")
        values = [float(r[0]) if isinstance(r, list) else float(r) for r in outs[out].tolist()]
        self._log(servable, label, sig, records, checked, values)
        return _json({"results": values})


def create_app(manager, request_log=None, on_startup=(), on_shutdown=()):
    """The Starlette application; ``on_startup``/``on_shutdown``: async callables run in its lifespan."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.routing import Route

    api = _Api(manager, request_log)

    async def healthz(request):
        body = {"status": "ok" if manager.ready() else "unavailable", "models": manager.summary()}
        if request_log is not None:
            body["request_log"] = request_log.stats()
        return _json(body, 200 if manager.ready() else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for f in on_startup:
            await f()
        try:
            yield
        finally:
            for f in on_shutdown:
                await f()

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"]),
                             Route("/v1/models/{rest:path}", api.get, methods=["GET"]),
                             Route("/v1/models/{rest:path}", api.post, methods=["POST"])],
                     lifespan=lifespan)
