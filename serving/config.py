"""TensorFlow Serving's ``models.config``: the contract between the registry and any model
server, ours or TF Serving's.

The registry writes it beside the pushed versions (``<push destination>/models.config``) on
every alias change: a text-format ``ModelServerConfig`` with, per registered model, its
base path, ``model_version_policy { specific { versions: ... } }`` (the versions to keep
loaded) and ``version_labels`` (alias -> version). TF Serving reads it with
``--model_config_file=... --model_config_file_poll_wait_seconds=N``; ``tfpipe serve``
polls it the same way. Written with TF Serving's own protos (tensorflow-serving-api) and
``text_format``, so every name and path in it is a literal made by the serializer; the
file is replaced atomically (written beside, then renamed), so a poller never reads half
of it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from tfpipe import fileio

__all__ = ["CONFIG_FILE", "ModelEntry", "ConfigError", "write_config", "read_config", "version_dirs",
           "resolve_versions", "is_version"]

CONFIG_FILE = "models.config"


class ConfigError(ValueError):
    """A models.config that cannot be read, or names what does not exist."""


@dataclass
class ModelEntry:
    """One model of a ModelServerConfig: ``versions`` None means TF Serving's default
    policy (the latest version); ``latest`` N the N highest; ``all`` every version."""
    name: str
    base_path: str
    versions: list[int] | None = None
    labels: dict[str, int] = field(default_factory=dict)
    latest: int | None = None
    all: bool = False


def _pb():
    from tensorflow_serving.config import model_server_config_pb2
    return model_server_config_pb2


def write_config(path: str, entries: list[ModelEntry]) -> str:
    """Write ``entries`` as a ModelServerConfig text proto at ``path``, atomically."""
    from google.protobuf import text_format
    pb = _pb()
    cfg = pb.ModelServerConfig()
    for e in entries:
        c = cfg.model_config_list.config.add()
        c.name = e.name
        c.base_path = e.base_path
        c.model_platform = "tensorflow"
        if e.versions is not None:
            c.model_version_policy.specific.versions.extend(sorted(int(v) for v in e.versions))
        elif e.all:
            c.model_version_policy.all.SetInParent()
        elif e.latest:
            c.model_version_policy.latest.num_versions = int(e.latest)
        for label in sorted(e.labels):
            c.version_labels[label] = int(e.labels[label])
    text = ("# Written by the tfpipe model registry on every alias change; read by TF Serving\n"
            "# (--model_config_file, --model_config_file_poll_wait_seconds) and by `tfpipe serve`.\n"
            + text_format.MessageToString(cfg))
    fileio.write_text(path, text, durable=True)
    return path


def read_config(path: str) -> list[ModelEntry]:
    """The models of a ModelServerConfig text file; ConfigError (with line and column) when
    it cannot be read, is not UTF-8 text or does not parse. Messages name the file by its
    base name: they reach answers (/healthz, model status), which show no paths."""
    from google.protobuf import text_format
    pb = _pb()
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {name}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          f"expected a ModelServerConfig text proto") from None
    cfg = pb.ModelServerConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise ConfigError(f"{name}:{e.GetLine()}:{e.GetColumn()}: not a ModelServerConfig text proto: "
                          f"{str(e).split(':', 2)[-1].strip()[:200]}") from None
    except Exception as e:  # noqa: BLE001 - whatever else the parser raises is still a bad file
        raise ConfigError(f"{name}: not a ModelServerConfig text proto: {type(e).__name__}") from None
    if cfg.WhichOneof("config") == "custom_model_config":
        raise ConfigError(f"{name}: custom_model_config is not supported; expected model_config_list")
    out = []
    for c in cfg.model_config_list.config:
        if not c.name or not c.base_path:
            raise ConfigError(f"{name}: every config needs a name and a base_path; found "
                              + (f"name {c.name[:80]!r} without a base_path" if c.name else "a config without a name"))
        base = c.base_path if os.path.isabs(c.base_path) else os.path.join(os.path.dirname(os.path.abspath(path)),
                                                                          c.base_path)
        e = ModelEntry(c.name, base, labels={k: int(v) for k, v in c.version_labels.items()})
        policy = c.model_version_policy.WhichOneof("policy_choice")
        if policy == "specific":
            e.versions = [int(v) for v in c.model_version_policy.specific.versions]
        elif policy == "all":
            e.all = True
        elif policy == "latest":
            e.latest = int(c.model_version_policy.latest.num_versions) or 1
        out.append(e)
    return out


def is_version(text: str) -> bool:
    """A version number exactly as TF Serving writes one: ASCII digits, no sign, no
    separator, no leading zero (``0`` itself aside), within int64."""
    return (isinstance(text, str) and 0 < len(text) <= 19 and text.isascii() and text.isdigit()
            and (text == "0" or text[0] != "0") and int(text) < 2**63)


def version_dirs(base_path: str) -> dict[int, str]:
    """The integer version directories under a base path (TF Serving's layout)."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    # only canonical names: "01" or Arabic-Indic digits would otherwise alias version 1
    return {int(n): os.path.join(base_path, n) for n in names
            if is_version(n) and os.path.isdir(os.path.join(base_path, n))}


def resolve_versions(entry: ModelEntry) -> dict[int, str]:
    """The versions ``entry`` asks to serve, mapped to their directories; ConfigError when a
    specific version or a label's version is not on disk."""
    on_disk = version_dirs(entry.base_path)
    if entry.versions is not None:
        wanted = set(entry.versions)
    elif entry.all:
        wanted = set(on_disk)
    else:
        wanted = set(sorted(on_disk)[-(entry.latest or 1):])
    missing = sorted(v for v in wanted | set(entry.labels.values()) if v not in on_disk)
    if missing:
        raise ConfigError(f"model {entry.name}: version(s) {missing} are not in its base path "
                          f"(found {sorted(on_disk)})")
    bad = {k: v for k, v in entry.labels.items() if v not in wanted}
    if bad and entry.versions is not None:
        raise ConfigError(f"model {entry.name}: label(s) {bad} point at versions outside the specific "
                          f"versions {sorted(wanted)}")
    return {v: on_disk[v] for v in sorted(wanted | set(entry.labels.values()))}
