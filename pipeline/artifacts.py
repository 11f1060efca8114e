"""Artifact types: small classes with a type name, a URI and typed properties.

Each class maps 1:1 to an ML Metadata artifact type of the same name. Properties are
declared once, as ``PROPERTIES = {"name": int | float | str | list | dict | bool}``;
list and dict values are stored as JSON strings in ML Metadata.
"""
from __future__ import annotations

import json
import os
from typing import Any, ClassVar

__all__ = [
    "Artifact", "ValueArtifact", "artifact_class", "registered_types",
    "Examples", "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph",
    "TransformCache", "Model", "ModelRun", "HyperParameters", "ModelEvaluation",
    "ModelBlessing", "InfraBlessing", "PushedModel", "InferenceResult",
    "String", "Integer", "Float", "Boolean", "JsonValue",
]

_REGISTRY: dict[str, type["Artifact"]] = {}

# Properties every artifact has: a content fingerprint, recorded when it is published.
_COMMON = {"fingerprint": str}


class UnknownArtifactType(KeyError):
    pass


class Artifact:
    """An artifact: ``type_name``, ``uri``, typed ``properties``.

    ``id`` is the ML Metadata id once the artifact is recorded; ``state`` mirrors the
    ML Metadata state (PENDING, LIVE, ABANDONED, ...).
    """

    TYPE_NAME: ClassVar[str] = "Artifact"
    PROPERTIES: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "TYPE_NAME" not in cls.__dict__:
            cls.TYPE_NAME = cls.__name__
        _REGISTRY[cls.TYPE_NAME] = cls

    def __init__(self, uri: str = "", properties: dict[str, Any] | None = None,
                 id: int | None = None, state: str = "PENDING", custom: dict[str, Any] | None = None):
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "properties", {})
        object.__setattr__(self, "custom", dict(custom or {}))
        for k, v in (properties or {}).items():
            self.set(k, v)

    @classmethod
    def property_types(cls) -> dict[str, type]:
        return {**_COMMON, **cls.PROPERTIES}

    @property
    def type_name(self) -> str:
        return self.TYPE_NAME

    def set(self, name: str, value: Any) -> None:
        types = self.property_types()
        if name not in types:
            raise AttributeError(
                f"{self.TYPE_NAME} has no property {name!r}; expected one of {sorted(types)}")
        want = types[name]
        if value is not None:
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if want in (list, dict):
                value = json.loads(json.dumps(value))  # plain JSON data only
                if not isinstance(value, want):
                    raise TypeError(f"{self.TYPE_NAME}.{name} expects {want.__name__}, found {type(value).__name__}")
            elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise TypeError(f"{self.TYPE_NAME}.{name} expects {want.__name__}, "
                                f"found {type(value).__name__} ({value!r})")
        self.properties[name] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        types = type(self).property_types()
        if name in types:
            return self.properties.get(name)
        raise AttributeError(f"{self.TYPE_NAME} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("uri", "id", "state"):
            object.__setattr__(self, name, value)
        else:
            self.set(name, value)

    def path(self, *parts: str) -> str:
        return os.path.join(self.uri, *parts)

    def to_json(self) -> dict:
        return {"type": self.TYPE_NAME, "id": self.id, "uri": self.uri, "state": self.state,
                "properties": dict(self.properties), "custom": dict(self.custom)}

    @classmethod
    def from_json(cls, d: dict) -> "Artifact":
        klass = artifact_class(d["type"])
        return klass(uri=d["uri"], properties=d.get("properties"), id=d.get("id"),
                     state=d.get("state", "LIVE"), custom=d.get("custom"))

    def __repr__(self) -> str:
        return f"{self.TYPE_NAME}(id={self.id}, uri={self.uri!r}, {self.properties})"


def artifact_class(type_name: str) -> type[Artifact]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise UnknownArtifactType(
            f"unknown artifact type {type_name!r}; registered: {sorted(_REGISTRY)}") from None


def registered_types() -> dict[str, type[Artifact]]:
    return dict(_REGISTRY)


class _Split:
    """Helpers for artifacts that hold one sub-directory per split."""

    def split_uri(self, split: str) -> str:
        return os.path.join(self.uri, f"Split-{split}")


class Examples(Artifact, _Split):
    PROPERTIES = {"span": int, "version": int, "split_names": list, "row_counts": dict,
                  "payload_format": str, "input_fingerprint": str, "columns": dict}


class ExampleStatistics(Artifact, _Split):
    PROPERTIES = {"span": int, "split_names": list}


class Schema(Artifact):
    PROPERTIES = {}

    SCHEMA_FILE = "schema.pbtxt"


class ExampleAnomalies(Artifact, _Split):
    PROPERTIES = {"span": int, "split_names": list, "anomaly_count": int}


class TransformGraph(Artifact):
    pass


class TransformCache(Artifact):
    pass


class Model(Artifact):
    PROPERTIES = {"framework": str}


class ModelRun(Artifact):
    pass


class HyperParameters(Artifact):
    pass


class ModelEvaluation(Artifact):
    pass


class ModelBlessing(Artifact):
    PROPERTIES = {"blessed": bool, "reasons": list}


class InfraBlessing(Artifact):
    PROPERTIES = {"blessed": bool, "reasons": list}


class PushedModel(Artifact):
    PROPERTIES = {"pushed": bool, "destination": str, "pushed_version": str, "reason": str}


class InferenceResult(Artifact):
    pass


class ValueArtifact(Artifact):
    """An artifact holding one small value, kept in ``<uri>/value`` and as a property."""

    VALUE_TYPE: ClassVar[type] = object
    FILE = "value"

    def write(self, value: Any) -> None:
        os.makedirs(self.uri, exist_ok=True)
        with open(self.path(self.FILE), "w") as f:
            json.dump(value, f)
        self.set("value", value)

    def read(self) -> Any:
        if self.properties.get("value") is not None:
            return self.properties["value"]
        with open(self.path(self.FILE)) as f:
            return json.load(f)


class String(ValueArtifact):
    PROPERTIES = {"value": str}


class Integer(ValueArtifact):
    PROPERTIES = {"value": int}


class Float(ValueArtifact):
    PROPERTIES = {"value": float}


class Boolean(ValueArtifact):
    PROPERTIES = {"value": bool}


class JsonValue(ValueArtifact):
    PROPERTIES = {"value": str}

    def write(self, value: Any) -> None:
        os.makedirs(self.uri, exist_ok=True)
        text = json.dumps(value, sort_keys=True)
        with open(self.path(self.FILE), "w") as f:
            f.write(text)
        self.set("value", text)

    def read(self) -> Any:
        return json.loads(self.properties["value"]) if self.properties.get("value") else \
            json.load(open(self.path(self.FILE)))
