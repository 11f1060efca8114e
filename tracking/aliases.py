"""The record of a model registry's versions and aliases in ML Metadata.

- A *version* is a ``PushedModel`` artifact that was pushed (``pushed=True``): the Pusher
  copied the model to ``<destination>/<pushed_version>``. Its *registered model* is the
  pipeline that pushed it.
- Every change of an alias is an execution of type ``ModelTransition`` (who, when, why;
  the alias, from and to stage) with an INPUT event on the version's artifact, attributed
  to a ``registered_model`` context; the current aliases are the replay of these records
  in the order they were made (execution ids).

This module reads and writes that record only; publishing the state to model servers is
``publishing``, the commands are ``registry``.

Concurrent changes. ML Metadata exposes no multi-statement transaction, so a change (read
the aliases, decide, write one or two records, publish) is made whole under
``registry_lock``, one lock per metadata store that every registry change takes:

- SQLite: an exclusive ``flock`` on ``<database>.registry.lock`` beside the database. The
  database is a local file, so every writer runs on a host that sees that file; the kernel
  releases the lock when the holder exits or dies.
- MySQL (and MariaDB): the server's named lock, ``GET_LOCK('tfpipe.registry.<database>')``,
  on a connection of its own held for the change. Writers on different hosts share it
  because the server grants it; the server releases it when that connection ends, so a
  killed process does not leave the registry locked. An optimistic compare-and-set on a
  context property was not chosen: ML Metadata updates a property with last-writer-wins,
  so two writers could each read back their own value and both believe they won.
- gRPC (a metadata service): no lock is available to the client; registry changes are
  refused with a message saying so (reading works).

One lock per store, not per registered model: ``models.config`` lists every model pushed
to a destination, so publishing one model's change reads the others' state and must not
interleave with their changes either. Alias changes are rare; waiting is cheap.

Under the lock each record is a compare-and-set: it states the version it replaced
(``previous_version``, read under the lock), its time is after the record before it, and
after writing, the registry checks that the record just before its own is the one its
decision was based on (``RegistryConflict`` otherwise: something wrote the record without
the lock, e.g. an older tfpipe). A set to the version already held records nothing.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import re
import time

from tfpipe.metadata import MetadataStore
from tfpipe.state import ArtifactState, EventKind

__all__ = ["RegistryError", "RegistryUsageError", "STAGES", "STAGE_ALIASES", "TRANSITION", "REGISTERED_MODEL",
           "check_alias", "parse_model_alias", "current_user", "pushed_versions", "transitions", "replay", "state",
           "held_aliases", "record", "registry_lock", "RegistryConflict", "LOCK_TIMEOUT_S"]

LOCK_TIMEOUT_S = float(os.environ.get("TFPIPE_REGISTRY_LOCK_TIMEOUT", "120"))

STAGES = ("none", "staging", "production", "archived")
STAGE_ALIASES = ("production", "staging")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
TRANSITION = "ModelTransition"
REGISTERED_MODEL = "registered_model"


class RegistryError(ValueError):
    pass


class RegistryUsageError(RegistryError):
    """A version, model or alias the command names does not exist, or a choice is ambiguous
    (several registered models, no --model): a usage error, exit 2."""


class RegistryConflict(RegistryError):
    """A record was written between this change's decision and its own record without the
    registry lock."""


def check_alias(alias: str) -> str:
    """An alias MLflow and TF Serving both accept: a letter, then letters, digits, ``_`` or
    ``-``; not ``latest`` nor ``v<number>`` (MLflow reserves them)."""
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.lower() == "latest" or re.match(
            r"^[vV]\d+$", alias):
        raise RegistryUsageError(f"alias {alias!r}: expected a letter followed by letters, digits, '_' or '-' "
                            f"(at most 63), not 'latest' or 'v<number>' (reserved by MLflow)")
    return alias


def parse_model_alias(text: str) -> tuple[str, str]:
    """``NAME@ALIAS`` -> (NAME, ALIAS)."""
    name, sep, alias = str(text).rpartition("@")
    if not sep or not name:
        raise RegistryUsageError(f"{text!r}: expected NAME@ALIAS, e.g. penguin@production")
    return name, check_alias(alias)


def current_user() -> str:
    """Who made a transition: ``$TFPIPE_USER``, else the login name."""
    try:
        return os.environ.get("TFPIPE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


def pushed_versions(store: MetadataStore) -> list[dict]:
    """Every pushed version: artifact, model name, destination, version, push run."""
    st = store
    arts = [a for a in st.list_artifacts("PushedModel") if a.properties.get("pushed")
            and a.state == ArtifactState.LIVE] if st.has_artifact_type("PushedModel") else []
    if not arts:
        return []
    evs = st.events_of_artifacts([a.id for a in arts], EventKind.OUTPUT)
    first: dict[int, int] = {}
    for e in evs:
        first[e.artifact_id] = min(first.get(e.artifact_id, e.execution_id), e.execution_id)
    execs = {e.id: e for e in st.executions(sorted(set(first.values())))}
    out, seen = [], {}
    for a in sorted(arts, key=lambda a: a.id):
        ex = execs.get(first.get(a.id))
        p = st.props(ex) if ex is not None else {}
        row = {"artifact": a, "id": a.id, "model": p.get("pipeline") or
               os.path.basename(str(a.properties.get("destination", "")).rstrip("/")),
               "version": str(a.properties.get("pushed_version")),
               "destination": a.properties.get("destination"), "run_id": p.get("run_id"),
               "pushed_at": (ex.create_time_since_epoch / 1000.0) if ex is not None else None,
               "artifact_ids": [a.id]}
        key = (row["model"], row["destination"], row["version"])
        if key in seen:  # the Pusher found the same model already there: one version, several records
            seen[key]["artifact_ids"].append(a.id)
            continue
        seen[key] = row
        out.append(row)
    return out


def transitions(store: MetadataStore, model: str | None = None) -> list[dict]:
    st = store
    try:
        execs = st.executions_of_type(TRANSITION)
    except Exception:
        return []
    rows = []
    for e in sorted(execs, key=lambda e: e.id):
        p = st.props(e)
        if model and p.get("model") != model:
            continue
        rows.append({"execution_id": e.id, **p})
    return rows


def alias_of(t: dict) -> str | None:
    """The alias a record changed (records made before aliases: the stage)."""
    return t.get("alias") or (t.get("to_stage") if t.get("to_stage") in STAGE_ALIASES else None)


def replay(records: list[dict]) -> tuple[dict[str, int], list[int], set[int]]:
    """The aliases (alias -> artifact id), the production stack, and the versions that
    ever held production or staging, from the records in order."""
    aliases: dict[str, int] = {}
    stack: list[int] = []
    held: set[int] = set()
    for t in records:
        aid, kind, alias = t["artifact_id"], t.get("kind"), alias_of(t)
        if kind == "promote" and t.get("to_stage") == "archived" or kind == "archive":
            for a in [a for a, v in aliases.items() if v == aid and a != "production"]:
                del aliases[a]
        elif kind in ("promote", "alias-set") and alias:
            aliases[alias] = aid
            if (kind == "promote" and alias == "production" and t.get("from_stage") == "staging"
                    and aliases.get("staging") == aid):
                del aliases["staging"]  # a stage move: the version leaves staging for production
            if alias in STAGE_ALIASES:
                held.add(aid)
            if alias == "production":
                if aid in stack:
                    stack.remove(aid)
                stack.append(aid)
        elif kind == "rolled-back":
            if stack and stack[-1] == aid:
                stack.pop()
            if aliases.get("production") == aid:
                del aliases["production"]
        elif kind == "rollback":
            while stack and stack[-1] != aid:
                stack.pop()
            if not stack:
                stack.append(aid)
            aliases["production"] = aid
            held.add(aid)
        elif kind == "alias-delete" and alias and aliases.get(alias) == aid:
            del aliases[alias]
    return aliases, stack, held


def state(records: list[dict]) -> tuple[dict[int, str], list[int]]:
    """Stage of every version (by artifact id) and the production stack."""
    aliases, stack, held = replay(records)
    stage = {aid: "archived" for aid in held}
    for alias in ("staging", "production"):
        if alias in aliases:
            stage[aliases[alias]] = alias
    return stage, stack


def held_aliases(store: MetadataStore, model: str, pushed: list[dict] | None = None) -> dict[str, dict]:
    """The current aliases of a registered model: alias -> its version's row."""
    by_id = {v["id"]: v for v in (pushed if pushed is not None else pushed_versions(store)) if v["model"] == model}
    aliases, _, _ = replay(transitions(store, model))
    return {a: by_id[aid] for a, aid in sorted(aliases.items()) if aid in by_id}


def record(store: MetadataStore, v: dict, from_stage: str, to_stage: str, reason: str, kind: str,
           extra=None, based_on: list[dict] | None = None) -> dict:
    """One transition of version ``v`` as a ``ModelTransition`` execution, made under
    ``registry_lock``. ``based_on``: the model's records the change was decided on (read
    under the lock; default: read now). The time is after the last of them; after writing,
    the record just before this one must be that last one (``RegistryConflict``)."""
    st = store
    before = transitions(st, v["model"]) if based_on is None else based_on
    last = before[-1] if before else None
    at = time.time()
    if last is not None and isinstance(last.get("at"), (int, float)) and at <= last["at"]:
        at = last["at"] + 1e-6  # a clock step back (or a coarse clock) still gives replay order
    props = {"model": v["model"], "version": v["version"], "artifact_id": v["id"], "from_stage": from_stage,
             "to_stage": to_stage, "user": current_user(), "reason": reason or "", "at": at,
             "kind": kind, **(extra or {})}
    ctx = st.context(REGISTERED_MODEL, v["model"], {"model": v["model"]})
    e = st.new_execution(TRANSITION, props, [ctx], {"model": [v["artifact"]]})
    st.publish_execution(e, "COMPLETE", {}, [ctx], {})
    earlier = [t["execution_id"] for t in transitions(st, v["model"]) if t["execution_id"] < e.id]
    expected = last["execution_id"] if last is not None else None
    if (earlier[-1] if earlier else None) != expected:
        raise RegistryConflict(
            f"{v['model']}: transition #{earlier[-1]} was recorded while this change (#{e.id}, {kind} version "
            f"{v['version']}) held the registry lock; expected the record before it to be "
            f"{'#' + str(expected) if expected is not None else 'none'}. Another program writes "
            f"ModelTransition records without the lock (every tfpipe writer must take it); check the history with "
            f"'tfpipe models show {v['version']} --model {v['model']}'")
    return {"execution_id": e.id, **props}


def _lock_target(store: MetadataStore) -> tuple[str, object]:
    cfg = store.config
    if hasattr(cfg, "HasField") and "sqlite" in cfg.DESCRIPTOR.fields_by_name and cfg.HasField("sqlite"):
        return "sqlite", cfg.sqlite.filename_uri
    if hasattr(cfg, "HasField") and "mysql" in cfg.DESCRIPTOR.fields_by_name and cfg.HasField("mysql"):
        return "mysql", cfg.mysql
    raise RegistryError(f"metadata store {store.where}: registry changes need a lock shared by every writer, "
                        f"which a gRPC metadata service does not offer; expected a SQLite path or a mysql:// URL "
                        f"(the database behind the service) for 'tfpipe models' changes; reading works on any store")


@contextlib.contextmanager
def _file_lock(path: str, timeout: float):
    import fcntl
    lock = path + ".registry.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise RegistryError(f"registry lock {lock}: cannot open it ({e.strerror}); expected a writable folder "
                            f"beside the metadata database") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryError(f"registry lock {lock}: still held by another change after {timeout:g} s; "
                                        f"expected it free (a 'tfpipe models' command still running?)") from None
                time.sleep(0.02)
        yield lock
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def _server_lock(m, where: str, timeout: float):
    try:
        import pymysql
    except ImportError:
        raise RegistryError(f"metadata store {where}: the registry's lock on a MySQL server needs the PyMySQL "
                            f"client; found it not installed (pip install PyMySQL)") from None
    name = f"tfpipe.registry.{m.database}"[:64]  # lock names are server-wide: one per database
    try:
        conn = pymysql.connect(host=m.host or "127.0.0.1", port=int(m.port or 3306), user=m.user,
                               password=m.password, database=m.database, connect_timeout=30, autocommit=True)
    except pymysql.MySQLError as e:
        raise RegistryError(f"metadata store {where}: cannot connect for the registry lock: {e}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, %s)", (name, max(0, int(timeout))))
            got = cur.fetchone()[0]
        if got != 1:
            raise RegistryError(f"metadata store {where}: registry lock {name!r} still held by another change after "
                                f"{timeout:g} s (GET_LOCK returned {got}); expected it free")
        yield name
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
        except Exception:  # noqa: BLE001 - closing the connection releases it too
            pass
        conn.close()


@contextlib.contextmanager
def registry_lock(store: MetadataStore, timeout: float | None = None):
    """Hold the registry lock of ``store`` (see the module docstring) for the block."""
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    kind, target = _lock_target(store)
    if kind == "sqlite":
        with _file_lock(os.path.abspath(target), timeout) as what:
            yield what
    else:
        with _server_lock(target, store.where, timeout) as what:
            yield what
