"""Artifact types: small classes with a type name, a URI and typed properties.

Each class maps 1:1 to an ML Metadata artifact type of the same name. Properties are
declared once, as ``PROPERTIES = {"name": int | float | str | list | dict | bool}``;
list and dict values are stored as JSON strings in ML Metadata.

Each class also owns its file layout under ``uri`` (``Examples.parquet_files(split)``,
``ExampleStatistics.stats_path(split)``, ``Schema.schema_path()``,
``Model.serving_dir()``, ...): the component that writes an artifact and every reader
(components downstream, tracking, the report) ask the artifact, not each other.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar

from . import fileio
from .state import ArtifactState

__all__ = [
    "Artifact", "ValueArtifact", "artifact_class", "registered_types", "ArtifactLayoutError",
    "Examples", "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph",
    "Model", "ModelRun", "HyperParameters", "ModelEvaluation",
    "ModelBlessing", "InfraBlessing", "PushedModel", "InferenceResult",
    "String", "Integer", "Float", "Boolean", "JsonValue", "EnvironmentLock",
]

_REGISTRY: dict[str, type["Artifact"]] = {}

# Properties every artifact has: a content fingerprint, recorded when it is published.
_COMMON = {"fingerprint": str}


class UnknownArtifactType(KeyError):
    pass


class ArtifactLayoutError(ValueError):
    """An artifact's directory does not hold what its type says it holds."""


class Artifact:
    """An artifact: ``type_name``, ``uri``, typed ``properties``.

    ``id`` is the ML Metadata id once the artifact is recorded; ``state`` mirrors the
    ML Metadata state, an ``ArtifactState`` (PENDING, LIVE, ABANDONED, ...).
    """

    TYPE_NAME: ClassVar[str] = "Artifact"
    PROPERTIES: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "TYPE_NAME" not in cls.__dict__:
            cls.TYPE_NAME = cls.__name__
        _REGISTRY[cls.TYPE_NAME] = cls

    def __init__(self, uri: str = "", properties: dict[str, Any] | None = None,
                 id: int | None = None, state: ArtifactState | str = ArtifactState.PENDING,
                 custom: dict[str, Any] | None = None):
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "state", ArtifactState(state))
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
        if name == "state":
            object.__setattr__(self, name, ArtifactState(value))
        elif name in ("uri", "id"):
            object.__setattr__(self, name, value)
        else:
            self.set(name, value)

    def path(self, *parts: str) -> str:
        return fileio.join(self.uri, *parts)

    def at(self, uri: str) -> "Artifact":
        """The same artifact (id, state, properties) read from another location: a local
        copy of an artifact kept on an object store."""
        a = type(self)(uri=uri, id=self.id, state=self.state, custom=self.custom)
        object.__setattr__(a, "properties", dict(self.properties))
        object.__setattr__(a, "_stored_uri", self.stored_uri)
        return a

    @property
    def stored_uri(self) -> str:
        """Where the artifact is recorded in ML Metadata (``uri`` may be a local copy)."""
        return self.__dict__.get("_stored_uri") or self.uri

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
    """Artifacts that hold one sub-directory per split: ``<uri>/Split-<name>/``."""

    SPLIT_PREFIX = "Split-"

    def split_uri(self, split: str) -> str:
        return fileio.join(self.uri, f"{self.SPLIT_PREFIX}{split}")

    def splits_on_disk(self) -> list[str]:
        """The splits whose directories exist, sorted."""
        if not fileio.isdir(self.uri):
            return []
        return sorted(d[len(self.SPLIT_PREFIX):] for d in fileio.listdir(self.uri)
                      if d.startswith(self.SPLIT_PREFIX) and fileio.isdir(fileio.join(self.uri, d)))


class Examples(Artifact, _Split):
    """Examples of each split: Parquet files (ExampleGen), or TFRecord files of tf.Example
    (``payload_format`` FORMAT_TF_EXAMPLE: what Transform writes)."""

    PROPERTIES = {"span": int, "version": int, "split_names": list, "row_counts": dict,
                  "payload_format": str, "input_fingerprint": str, "columns": dict,
                  # what ExampleGen read: "files", or the source's name ("delta", "avro", a
                  # user's "module:Class"), and its data version (a Delta table's version)
                  "source": str, "data_version": dict}
    PARQUET_FILE = "data.parquet"
    TF_EXAMPLE_FORMAT = "FORMAT_TF_EXAMPLE"
    TFRECORD_PREFIX = "transformed_examples"

    def _split_files(self, split: str, pattern: str, what: str) -> list[str]:
        names = self.split_names or []
        if split not in names:
            raise ArtifactLayoutError(f"Examples #{self.id} ({self.uri}) has no split {split!r}; splits: {names}")
        files = fileio.glob(fileio.join(self.split_uri(split), pattern))
        if not files:
            raise ArtifactLayoutError(f"split {split!r} of Examples at {self.uri} holds no {what} files")
        return files

    def parquet_path(self, split: str) -> str:
        """Where ExampleGen writes a split."""
        return fileio.join(self.split_uri(split), self.PARQUET_FILE)

    def parquet_glob(self, split: str) -> str:
        return fileio.join(self.split_uri(split), "*.parquet")

    def parquet_files(self, split: str) -> list[str]:
        return self._split_files(split, "*.parquet", "Parquet")

    def tfrecord_prefix(self, split: str) -> str:
        """The file prefix Transform writes a split's tf.Example TFRecords under."""
        return fileio.join(self.split_uri(split), self.TFRECORD_PREFIX)

    def tfrecord_files(self, split: str) -> list[str]:
        return self._split_files(split, f"{self.TFRECORD_PREFIX}-*", "TFRecord")

    def files(self, split: str) -> list[str]:
        """The data files of a split, whatever its payload format."""
        if self.payload_format == self.TF_EXAMPLE_FORMAT:
            return self.tfrecord_files(split)
        return self.parquet_files(split)


class ExampleStatistics(Artifact, _Split):
    """TFDV statistics of each split: ``Split-<name>/FeatureStats.pb``."""

    PROPERTIES = {"span": int, "split_names": list}
    STATS_FILE = "FeatureStats.pb"

    def stats_path(self, split: str) -> str:
        return fileio.join(self.split_uri(split), self.STATS_FILE)

    def splits_with_stats(self) -> list[str]:
        return [s for s in self.splits_on_disk() if fileio.isfile(self.stats_path(s))]


class Schema(Artifact):
    """A TFDV schema (text proto): ``schema.pbtxt``."""

    PROPERTIES = {}
    SCHEMA_FILE = "schema.pbtxt"

    def schema_path(self) -> str:
        return self.path(self.SCHEMA_FILE)


class ExampleAnomalies(Artifact, _Split):
    PROPERTIES = {"span": int, "split_names": list, "anomaly_count": int}


class TransformGraph(Artifact):
    """A ``tft.TFTransformOutput`` directory (``transform_fn/``, ``transformed_metadata/``)."""


class Model(Artifact):
    """A trained model: the serving SavedModel in ``Format-Serving/``."""

    PROPERTIES = {"framework": str}
    SERVING_DIR = "Format-Serving"
    KERAS_DIR = "Format-Keras"  # the Keras model's weights, for warm starts

    def serving_dir(self) -> str:
        return self.path(self.SERVING_DIR)

    def saved_model_dir(self) -> str:
        """The SavedModel to load: ``Format-Serving/``, or the artifact's own directory for
        a model imported as a bare SavedModel."""
        d = self.serving_dir()
        return d if fileio.isdir(d) else self.uri


class ModelRun(Artifact):
    """What a training run leaves beside the model: ``history.json`` (per-epoch metrics)
    and TensorBoard logs."""

    HISTORY_FILE = "history.json"

    def history_path(self) -> str:
        return self.path(self.HISTORY_FILE)


class HyperParameters(Artifact):
    """The Tuner's result: the best values (JSON), the full KerasTuner config, the trials."""

    VALUES_FILE = "best_hyperparameters.txt"
    CONFIG_FILE = "best_hyperparameters_config.json"
    TRIALS_FILE = "trials.json"

    def values_path(self) -> str:
        return self.path(self.VALUES_FILE)

    def config_path(self) -> str:
        return self.path(self.CONFIG_FILE)

    def trials_path(self) -> str:
        return self.path(self.TRIALS_FILE)


class ModelEvaluation(Artifact):
    """The Evaluator's metrics per slice (``metrics.json``) beside TFMA's own output."""

    METRICS_FILE = "metrics.json"

    def metrics_path(self) -> str:
        return self.path(self.METRICS_FILE)


class ModelBlessing(Artifact):
    PROPERTIES = {"blessed": bool, "reasons": list}


class InfraBlessing(Artifact):
    PROPERTIES = {"blessed": bool, "reasons": list}


class PushedModel(Artifact):
    PROPERTIES = {"pushed": bool, "destination": str, "pushed_version": str, "reason": str}


class InferenceResult(Artifact):
    pass


class EnvironmentLock(Artifact):
    """The full environment a run ran in (``environment.json``: the Python version and
    every installed distribution with its version, and how tfpipe itself was installed),
    stored once per distinct environment and referenced by its hash."""

    PROPERTIES = {"lock_hash": str, "python": str}
    LOCK_FILE = "environment.json"

    def lock_path(self) -> str:
        return self.path(self.LOCK_FILE)


class ValueArtifact(Artifact):
    """An artifact holding one small value, kept in ``<uri>/value`` and as a property."""

    VALUE_TYPE: ClassVar[type] = object
    FILE = "value"

    def write(self, value: Any) -> None:
        fileio.write_text(self.path(self.FILE), json.dumps(value))
        self.set("value", value)

    def read(self) -> Any:
        if self.properties.get("value") is not None:
            return self.properties["value"]
        return json.loads(fileio.read_text(self.path(self.FILE)))


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
        text = json.dumps(value, sort_keys=True)
        fileio.write_text(self.path(self.FILE), text)
        self.set("value", text)

    def read(self) -> Any:
        return json.loads(self.properties["value"]) if self.properties.get("value") else \
            json.loads(fileio.read_text(self.path(self.FILE)))
