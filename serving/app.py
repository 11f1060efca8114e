"""TensorFlow Serving's REST API on Starlette.

    GET  /v1/models/NAME[/versions/V | /labels/L]              model version status
    GET  /v1/models/NAME[/versions/V | /labels/L]/metadata     signatures (GetModelMetadataResponse)
    POST /v1/models/NAME[/versions/V | /labels/L]:predict      {"instances": [...]} or {"inputs": {...}}
    POST /v1/models/NAME[/versions/V | /labels/L]:classify     {"examples": [...], "context": {...}}
    POST /v1/models/NAME[/versions/V | /labels/L]:regress
    GET  /healthz                                             200 when every model serves a version

Limits (``Limits``; flags of ``tfpipe serve`` and ``python -m tfpipe.serving``): a body
larger than ``max_body_bytes`` is answered 413 (from its Content-Length, before it is read,
or as soon as a chunked body passes it), a body not received whole within
``body_timeout_s`` 408, more than ``max_instances`` examples 413; the header timeout is the
HTTP protocol's (``server.py``). A body over 16 KiB is parsed (JSON, checks, tf.Examples)
on a thread pool, so a large request does not hold up small ones on the event loop.

Request bodies carry raw features as JSON (``{"island": "Biscoe", "body_mass_g": 3750}``) or
serialized tf.Examples as ``{"b64": ...}``; the serving signature parses and transforms
them. Errors are TF Serving's ``{"error": "..."}``: 400 for a bad request (naming the
field and what was expected, with at most a short excerpt of the input), 404 for an
unknown model, version or label (never the names of other models, nor paths). Every
answer from a model version names it in ``X-Model-Name`` and ``X-Model-Version``. Without a
version or label a request goes to the ``production`` label when there is one (TF
Serving would take the highest version), else to the highest version.
"""
from __future__ import annotations

import asyncio
import json
import re
import traceback
from dataclasses import dataclass
from urllib.parse import quote

from .features import RequestError, excerpt, json_safe, to_examples
from .manager import NotFound
from .servable import ModelError

__all__ = ["create_app", "Limits"]

_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<tail>/metadata|:predict|:classify|:regress)?$")
INLINE_BYTES = 16 * 1024  # a body this small is parsed on the event loop (cheaper than a thread hop)
MAX_ERROR_CHARS = 1000  # a backstop: every piece of input in a message is already an excerpt
CLOSE = {"Connection": "close"}


@dataclass
class Limits:
    """Per-request limits; 0 = none."""
    max_body_bytes: int = 10 * 1024 * 1024
    max_instances: int = 10_000
    body_timeout_s: float = 30.0


class _Refused(Exception):
    """A request refused before its body is parsed: status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class _Gone(Exception):
    """The client went away before its body was read: nobody to answer."""


def _json(body, status: int = 200, headers: dict | None = None):
    from starlette.responses import Response
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(message: str, status: int, headers: dict | None = None):
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return _json({"error": message}, status, headers)


def _model_headers(servable) -> dict:
    # quoted: a header value is Latin-1, a model name may not be
    return {"X-Model-Name": quote(servable.name, safe=""), "X-Model-Version": str(servable.version)}


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


def _too_many(n: int, where: str, limits: Limits) -> None:
    if limits.max_instances and n > limits.max_instances:
        raise _Refused(413, f"{where}: {n} examples in one request; this server takes at most "
                            f"{limits.max_instances} (--max-instances); send them in several requests")


def _rows_of_columns(inputs, where: str, limits: Limits) -> list:
    """The columnar format turned into rows: ``{feature: [value per example]}``."""
    if isinstance(inputs, list):
        return inputs
    if not isinstance(inputs, dict) or not inputs:
        raise RequestError(f"{where}: expected an object mapping each feature to a list with one value per "
                           f"example (or a list of examples)")
    lengths = {}
    for k, v in inputs.items():
        if not isinstance(v, list):
            raise RequestError(f"{where}.{excerpt(k, 40)}: expected a list with one value per example, found "
                               f"{'an object' if isinstance(v, dict) else type(v).__name__}")
        lengths[k] = len(v)
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{excerpt(k, 40)}: {n}" for k, n in list(lengths.items())[:5])
        raise RequestError(f"{where}: every feature needs one value per example; lengths differ: {{{shown}}}")
    n = next(iter(lengths.values()))
    _too_many(n, where, limits)
    return [{k: inputs[k][i] for k in inputs} for i in range(n)]


def _decode(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise RequestError("the request body is not JSON this server takes: arrays or objects nested too deep "
                           "(a feature's value is a list of scalars)") from None
    except ValueError as e:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise RequestError(f"the request body is not JSON: {str(e)[:200]}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object, e.g. {\"instances\": [{...}, ...]}")
    return body


async def _receive(request, deadline):
    if deadline is None:
        return await request.receive()
    return await asyncio.wait_for(request.receive(), max(0.0, deadline - asyncio.get_running_loop().time()))


async def _drain(request, deadline, budget: int) -> None:
    """Read and drop up to ``budget`` more bytes of a refused body before answering: closing
    a connection with unread input makes the kernel reset it, and the client would then see
    a reset instead of the 413. Past the budget or the deadline the answer goes anyway."""
    try:
        while budget > 0:
            msg = await _receive(request, deadline)
            if msg["type"] == "http.disconnect":
                raise _Gone()
            budget -= len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return
    except asyncio.TimeoutError:
        return


async def _read_body(request, limits: Limits) -> bytes:
    """The whole body, within the size and time limits (raising _Refused) or _Gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.body_timeout_s if limits.body_timeout_s else None
    cl = request.headers.get("content-length")
    if cl is not None and limits.max_body_bytes and cl.isascii() and cl.isdigit() \
            and int(cl) > limits.max_body_bytes:
        refused = _Refused(413, f"the request body is {int(cl)} bytes; this server takes at most "
                                f"{limits.max_body_bytes} (--max-body-bytes)", CLOSE)
        if int(cl) <= 2 * limits.max_body_bytes:
            await _drain(request, deadline, int(cl))
        raise refused
    chunks, size = [], 0
    while True:
        try:
            msg = await _receive(request, deadline)
        except asyncio.TimeoutError:
            raise _Refused(408, f"the request body did not arrive within {limits.body_timeout_s:g} s "
                                f"(--body-timeout); {size} bytes came", CLOSE) from None
        if msg["type"] == "http.disconnect":
            raise _Gone()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if limits.max_body_bytes and size > limits.max_body_bytes:
            chunks.clear()
            if msg.get("more_body", False):
                await _drain(request, deadline, limits.max_body_bytes)
            raise _Refused(413, f"the request body is larger than {limits.max_body_bytes} bytes "
                                f"(--max-body-bytes)", CLOSE)
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


@dataclass
class _Call:
    """A request parsed and checked, ready for the model."""
    verb: str
    sig: str
    records: list
    checked: list
    columnar: bool = False
    output: str | None = None  # :classify / :regress: the one output read


class _Api:
    def __init__(self, manager, request_log=None, limits: Limits | None = None, parse_executor=None, log=None):
        self.manager, self.log = manager, request_log
        self.limits = limits or Limits()
        self.parse_executor = parse_executor
        self.say = log or manager.log

    async def get(self, request):
        m = _PATH.match(request.path_params["rest"])
        if not m or m["tail"] not in (None, "/metadata"):
            return _error(f"Malformed request: GET {excerpt(request.url.path)}", 404)
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
            return _error(f"Malformed request: POST {excerpt(request.url.path)}; expected "
                          f"/v1/models/NAME[/versions/V|/labels/L]:predict|:classify|:regress", 404)
        try:
            servable, label = self.manager.resolve(m["name"], m["version"], m["label"])
        except NotFound as e:
            return _error(str(e), 404)
        headers = _model_headers(servable)
        servable.acquire()  # the request finishes on this version, whatever is swapped meanwhile
        try:
            raw = await _read_body(request, self.limits)
            verb = m["tail"][1:]
            if len(raw) <= INLINE_BYTES or self.parse_executor is None:
                call = self._prepare(raw, verb, servable)
            else:
                call = await asyncio.get_running_loop().run_in_executor(self.parse_executor, self._prepare, raw,
                                                                        verb, servable)
            outs = await servable.run(call.sig, call.records)
            if len(call.records) <= 64 or self.parse_executor is None:
                payload, per_row = self._finish(call, servable, outs)
            else:
                payload, per_row = await asyncio.get_running_loop().run_in_executor(
                    self.parse_executor, self._finish, call, servable, outs)
            self._log(servable, label, call, per_row)
            from starlette.responses import Response
            return Response(payload, media_type="application/json", headers=headers)
        except _Gone:
            from starlette.responses import Response
            return Response(status_code=499)  # nobody reads it: the connection is closed
        except _Refused as e:
            return _error(str(e), e.status, {**headers, **e.headers})
        except RequestError as e:
            return _error(str(e), 400, headers)
        except ModelError as e:
            return _error(str(e), 400 if e.bad_input else 500, headers)
        except Exception as e:  # noqa: BLE001 - a bug: a JSON 500 and its traceback in the log, once
            self.say(f"error: {request.method} {excerpt(request.url.path)}: {type(e).__name__}: {e}\n"
                     + "".join(traceback.format_exception(e)).rstrip())
            return _error(f"internal error ({type(e).__name__})", 500, headers)
        finally:
            servable.release()

    # -- parsing (inline or on the parse pool: nothing here touches the event loop) ----------
    def _prepare(self, raw: bytes, verb: str, servable) -> _Call:
        body = _decode(raw)
        sig = self._signature(servable, body)
        columnar, output = False, None
        if verb == "predict":
            has_rows, has_cols = "instances" in body, "inputs" in body
            if has_rows == has_cols:
                raise RequestError("expected exactly one of 'instances' (row format) or 'inputs' (columnar format)"
                                   + ("; a request can have either of them but NOT both" if has_rows else ""))
            if has_rows:
                rows, where = body["instances"], "instances"
                if not isinstance(rows, list):
                    raise RequestError(f"instances: expected a list of examples, found {type(rows).__name__}")
                _too_many(len(rows), where, self.limits)
            else:
                rows, where, columnar = _rows_of_columns(body["inputs"], "inputs", self.limits), "inputs", True
        else:
            output = self._single_output(servable, sig, verb)
            width = servable.info.output_width(sig, output)
            if verb == "classify" and width is not None and width < 2:
                raise RequestError(f"classify: signature {sig!r} of model {servable.name} returns one value per "
                                   f"example (a regression); use :regress")
            if verb == "regress" and width is not None and width != 1:
                raise RequestError(f"regress: signature {sig!r} of model {servable.name} returns {width} scores "
                                   f"per example (a classifier); use :classify or :predict")
            rows, where = self._examples(body), "examples"
        spec = servable.info.parse_specs.get(sig, {})
        checked: list = []
        records = to_examples(rows, spec, where, input_name=servable.info.input_name(sig),
                              ignore=tuple(servable.info.label_keys), rows_out=checked)
        if not records:
            raise RequestError(f"{where}: no examples; expected at least one")
        return _Call(verb, sig, records, checked, columnar, output)

    def _finish(self, call: _Call, servable, outs) -> tuple[bytes, list]:
        """The response body and each example's output (for the request log)."""
        n = len(call.records)
        if call.verb == "predict":
            cols = {k: _tolist(v) for k, v in outs.items()}
            names = sorted(cols)
            per_row = ([cols[names[0]][i] for i in range(n)] if len(names) == 1 else
                       [{k: cols[k][i] for k in names} for i in range(n)])
            if call.columnar:
                return json.dumps({"outputs": cols[names[0]] if len(names) == 1 else cols}).encode(), per_row
            return json.dumps({"predictions": per_row}).encode(), per_row
        scores = outs[call.output].tolist()
        if call.verb == "classify":
            names = servable.info.class_names or [str(i) for i in range(len(scores[0]) if scores else 0)]
            results = [[[names[j], float(s)] for j, s in enumerate(row)] for row in scores]
            return json.dumps({"results": results}).encode(), scores
        values = [float(r[0]) if isinstance(r, list) else float(r) for r in scores]
        return json.dumps({"results": values}).encode(), values

    def _signature(self, servable, body) -> str:
        sig = body.get("signature_name") or "serving_default"
        if not isinstance(sig, str) or sig not in servable.info.signature_defs:
            raise RequestError(f"signature_name: model {servable.name} version {servable.version} has no "
                               f"signature {excerpt(sig, 40)}; it has {sorted(servable.info.signature_defs)}")
        if not servable.info.example_signature(sig):
            raise RequestError(f"signature_name: {sig!r} takes {sorted(servable.info.signature_defs[sig].inputs)}; "
                               f"this server feeds signatures that take serialized tf.Examples")
        return sig

    def _log(self, servable, label, call: _Call, per_row):
        if self.log is not None and self.log.sample():
            self.log.offer(model=servable.name, version=servable.version, label=label, signature=call.sig,
                           spec=servable.info.parse_specs.get(call.sig, {}), rows=call.checked,
                           records=call.records, outputs=per_row)

    def _examples(self, body) -> list:
        rows = body.get("examples")
        if not isinstance(rows, list):
            raise RequestError("examples: expected a list of examples (objects of raw features), found "
                               + ("nothing" if rows is None else type(rows).__name__))
        _too_many(len(rows), "examples", self.limits)
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
                    raise RequestError(f"examples[{i}]: feature(s) {[excerpt(b, 40) for b in both[:5]]} appear in "
                                       f"both context and the example")
                out.append({**ctx, **r})
            rows = out
        return rows

    def _single_output(self, servable, sig, verb: str) -> str:
        outs = servable.info.outputs(sig)
        if len(outs) != 1:
            raise RequestError(f"{verb}: signature {sig!r} of model {servable.name} has outputs {outs}; {verb} "
                               f"needs one output of scores")
        return outs[0]


def create_app(manager, request_log=None, on_startup=(), on_shutdown=(), limits: Limits | None = None,
               parse_executor=None, log=None):
    """The Starlette application; ``on_startup``/``on_shutdown``: async callables run in its
    lifespan; ``parse_executor``: where bodies over 16 KiB are parsed (None: inline)."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    api = _Api(manager, request_log, limits, parse_executor, log)

    async def healthz(request):
        ready, problems = manager.ready(), manager.problems()
        # 200 while every model serves a version, even with problems (a load balancer must
        # not take a serving server out); "degraded" and the problems say what is wrong
        body = {"status": "unavailable" if not ready else "degraded" if problems else "ok",
                "problems": problems, "models": manager.summary(), "syncs": manager.syncs}
        if request_log is not None:
            body["request_log"] = request_log.stats()
        return _json(body, 200 if ready else 503)

    async def http_error(request, exc):  # Starlette's own 404/405 (unknown path, method): JSON too
        return _error(f"{exc.detail}: {request.method} {excerpt(request.url.path)}", exc.status_code,
                      getattr(exc, "headers", None))

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
                     exception_handlers={HTTPException: http_error}, lifespan=lifespan)
