"""Values that cross KFP without being expanded.

KFP (Vertex AI's backend, and kfp.local) replaces its placeholders (``{{$.pipeline_job_name}}``,
``{{$.inputs.parameters['x']}}``, ``{{$}}``) wherever they appear in a task's inputs, constant
or not, nested in lists and dicts too. A pipeline's own values must reach the task as they
were written, so every string that holds ``{{`` (or starts with the marker itself) travels
base64-encoded behind a marker and the task entry decodes it; the IR always travels encoded.
Values without braces stay readable in the KFP UI."""
from __future__ import annotations

import base64
import json

__all__ = ["MARKER", "encode", "decode", "encode_ir", "decode_ir"]

MARKER = "tfpipe-b64:"


def _b64(text: str) -> str:
    return MARKER + base64.b64encode(text.encode()).decode()


def encode(value):
    """``value`` with each string that KFP could expand replaced by its encoded form."""
    if isinstance(value, str):
        return _b64(value) if "{{" in value or value.startswith(MARKER) else value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value):
    if isinstance(value, str):
        return base64.b64decode(value[len(MARKER):]).decode() if value.startswith(MARKER) else value
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


def encode_ir(ir: dict) -> str:
    return _b64(json.dumps(ir, sort_keys=True))


def decode_ir(text: str) -> dict:
    return json.loads(decode(text))
