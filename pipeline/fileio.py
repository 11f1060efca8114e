"""One file-system layer for local paths and object stores (``s3://``, ``gs://``).

Every artifact, data, model and log location a user gives may be a local path or a URI;
the layers above ask this module, never ``os.path``/``open``/``shutil``, when the location
may be either. Local paths go to the operating system; ``s3://bucket/key`` and
``gs://bucket/key`` go to pyarrow's S3 and GCS file systems, configured only from the
standard places:

- S3: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (an S3-compatible server such as
  MinIO or SeaweedFS; unset for AWS itself), ``AWS_REGION``/``AWS_DEFAULT_REGION``, and the
  AWS SDK's own credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile,
  an instance role). Nothing here reads or stores a credential.
- GCS: ``STORAGE_EMULATOR_HOST`` (an emulator) or application default credentials.

Object stores have neither directories nor rename, and that decides the semantics:

- a "directory" is a key prefix: it exists when at least one object lies under it, found
  by listing (never by a marker object: S3-compatible servers differ on those, and
  ``makedirs`` writes nothing on an object store);
- an object written with :func:`write_bytes` (one PUT, or a multipart upload completed at
  close) is seen whole or not at all, so a single file needs no temporary name;
- a tree is published by uploading it under a prefix nobody reads yet and checking that
  a listing gives back every file at its size (:func:`upload_tree`); ML Metadata, not the
  store, says when it is LIVE.

TensorFlow is never handed an object-store URI: what TensorFlow reads (SavedModels, TFT
and TFMA outputs) is first copied to a local cache (:func:`local_copy`, immutable content
keyed by URI and fingerprint), and what it writes is written locally and uploaded. That
keeps tensorflow-io (and its abort at process exit) and TensorFlow's own GCS client (its
endpoint is compiled in) out of every process.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import shutil
import threading
import uuid
from collections.abc import Iterator

__all__ = [
    "StorageError", "is_remote", "scheme", "join", "dirname", "basename", "abspath", "exists", "isdir",
    "isfile", "listdir", "list_files", "glob", "makedirs", "remove", "rmtree", "open_file", "read_bytes",
    "read_text", "write_bytes", "write_text", "copy_tree", "copy_file", "upload_tree",
    "local_copy", "local_file", "version_of", "arrow_fs", "describe", "cache_dir", "endpoint",
]

REMOTE_SCHEMES = ("s3", "gs")


class StorageError(OSError):
    """An object-store operation failed; the message names the endpoint, bucket and key."""


def scheme(uri: str) -> str:
    """``"s3"``, ``"gs"`` or ``""`` (a local path)."""
    head, sep, _ = str(uri).partition("://")
    return head.lower() if sep and head.lower() in REMOTE_SCHEMES else ""


def is_remote(uri: str) -> bool:
    return bool(scheme(uri))


def _split(uri: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of a remote URI (key without a leading or trailing slash)."""
    s = scheme(uri)
    rest = str(uri).split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    key = posixpath.normpath(key).lstrip("/") if key.strip("/") else ""
    if key == ".":
        key = ""
    if not bucket:
        raise StorageError(f"{uri!r}: expected {s}://BUCKET/KEY, found no bucket")
    if key.startswith("../") or key == "..":
        raise StorageError(f"{uri!r}: the key leaves the bucket")
    return s, bucket, key


def _uri(s: str, bucket: str, key: str) -> str:
    return f"{s}://{bucket}/{key}" if key else f"{s}://{bucket}"


def join(base: str, *parts: str) -> str:
    if not is_remote(base):
        return os.path.join(base, *parts)
    return posixpath.join(str(base).rstrip("/"), *[p.strip("/") for p in parts if p])


def dirname(uri: str) -> str:
    if not is_remote(uri):
        return os.path.dirname(uri)
    s, b, k = _split(uri)
    return _uri(s, b, posixpath.dirname(k))


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/")) if is_remote(uri) else os.path.basename(uri)


def abspath(uri: str) -> str:
    """A local path made absolute; a URI normalised (no ``.``/``..``, no trailing slash)."""
    if not is_remote(uri):
        return os.path.abspath(uri)
    return _uri(*_split(uri))


def endpoint(s: str) -> str:
    """The endpoint the standard variables name for a scheme, or the service's own."""
    if s == "s3":
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    return ("http://" + os.environ["STORAGE_EMULATOR_HOST"].split("://")[-1]) if os.environ.get(
        "STORAGE_EMULATOR_HOST") else "Google Cloud Storage"


def describe(uri: str) -> str:
    """``endpoint E, bucket B, key K`` for an error message (no credential in it)."""
    if not is_remote(uri):
        return f"path {uri}"
    s, b, k = _split(uri)
    return f"endpoint {endpoint(s)}, bucket {b}, key {k or '/'}"


# -- pyarrow file systems ----------------------------------------------------------------------

_FS: dict[tuple, object] = {}
_FS_LOCK = threading.Lock()


def _config_key(s: str) -> tuple:
    names = (("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
              "AWS_PROFILE") if s == "s3" else ("STORAGE_EMULATOR_HOST",))
    return (s, os.getpid()) + tuple(os.environ.get(n) for n in names)


def _make_fs(s: str):
    import pyarrow.fs as pafs
    if s == "s3":
        kw: dict = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
        ep = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if ep:
            scheme_, _, hostport = ep.rpartition("://")
            kw["endpoint_override"] = hostport.rstrip("/")
            kw["scheme"] = scheme_ or "https"
        return pafs.S3FileSystem(**kw)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        scheme_, _, hostport = emulator.rpartition("://")
        return pafs.GcsFileSystem(anonymous=True, endpoint_override=hostport.rstrip("/"),
                                  scheme=scheme_ or "http")
    return pafs.GcsFileSystem()


def _fs(s: str):
    key = _config_key(s)
    with _FS_LOCK:  # a forked process makes its own: the clients hold threads and sockets
        fs = _FS.get(key)
        if fs is None:
            fs = _FS[key] = _make_fs(s)
    return fs


def arrow_fs(uri: str):
    """``(pyarrow FileSystem, path)`` for pyarrow's readers and writers (Parquet, CSV,
    datasets); a local path gets the local file system."""
    if not is_remote(uri):
        import pyarrow.fs as pafs
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    s, b, k = _split(uri)
    return _fs(s), f"{b}/{k}" if k else b


@contextlib.contextmanager
def _errors(uri: str, what: str) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as e:
        if is_remote(uri):
            raise FileNotFoundError(f"{what}: no object at {describe(uri)}") from None
        raise e
    except OSError as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "bucket" in text.lower() and ("not found" in text.lower() or "no_such_bucket" in text.lower()
                                         or "nosuchbucket" in text.lower()):
            raise StorageError(f"{what} failed at {describe(uri)}: the bucket does not exist") from None
        if "does not exist" in text or "No such file" in text or "NoSuchKey" in text:
            raise FileNotFoundError(f"{what}: no object at {describe(uri)}") from None
        raise StorageError(f"{what} failed at {describe(uri)}: {text}") from None


def _info(uri: str):
    fs, path = arrow_fs(uri)
    with _errors(uri, "looking up"):
        return fs.get_file_info(path)


def _listing(uri: str, recursive: bool = True) -> list:
    """FileInfo of every object under a remote prefix ([] when there is none)."""
    import pyarrow.fs as pafs
    fs, path = arrow_fs(uri)
    with _errors(uri, "listing"):
        return fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))


def _is_file_info(info) -> bool:
    import pyarrow.fs as pafs
    return info.type == pafs.FileType.File and not info.path.endswith("/")


# -- questions ---------------------------------------------------------------------------------

def isfile(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.isfile(uri)
    return _is_file_info(_info(uri))


def isdir(uri: str) -> bool:
    """A local directory, or a prefix with at least one object under it."""
    if not is_remote(uri):
        return os.path.isdir(uri)
    return any(_is_file_info(i) for i in _listing(uri))


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.exists(uri)
    return isfile(uri) or isdir(uri)


def version_of(uri: str) -> str:
    """What changes when a file or object is replaced: size and modification time."""
    if not is_remote(uri):
        st = os.stat(uri)
        return f"{st.st_size}:{st.st_mtime_ns}"
    info = _info(uri)
    if not _is_file_info(info):
        raise FileNotFoundError(f"no object at {describe(uri)}")
    mtime = info.mtime_ns if info.mtime_ns is not None else ""
    return f"{info.size}:{mtime}"


def list_files(uri: str) -> dict[str, int]:
    """``{relative path: size}`` of every file under a directory or prefix (``{}`` when
    there is none), with ``/`` as the separator."""
    if not is_remote(uri):
        out = {}
        if os.path.isfile(uri):
            return {"": os.path.getsize(uri)}
        for d, _, files in os.walk(uri):
            for f in files:
                p = os.path.join(d, f)
                out[os.path.relpath(p, uri).replace(os.sep, "/")] = os.path.getsize(p)
        return out
    _, path = arrow_fs(uri)
    return {i.path[len(path) + 1:]: int(i.size) for i in _listing(uri) if _is_file_info(i)}


def listdir(uri: str) -> list[str]:
    """The names directly under a directory or prefix, sorted."""
    if not is_remote(uri):
        return sorted(os.listdir(uri))
    names = {rel.split("/", 1)[0] for rel in list_files(uri)}
    return sorted(n for n in names if n)


def glob(pattern: str) -> list[str]:
    """Files matching a pattern (``*``, ``?``, ``[...]``; ``**`` spans folders on object
    stores), sorted."""
    if not is_remote(pattern):
        import glob as _glob
        return sorted(p for p in _glob.glob(pattern) if os.path.isfile(p))
    s, b, k = _split(pattern)
    parts = k.split("/")
    fixed = []
    for p in parts:
        if any(c in p for c in "*?["):
            break
        fixed.append(p)
    base = _uri(s, b, "/".join(fixed))
    if len(fixed) == len(parts):
        return [base] if isfile(base) else []
    rx = _glob_regex(k)
    found = []
    for rel in list_files(base):
        full = "/".join(fixed + [rel]) if fixed else rel
        if rx.fullmatch(full):
            found.append(_uri(s, b, full))
    return sorted(found)


def _glob_regex(pattern: str):
    """A glob as a regular expression: ``*`` and ``?`` stay within a folder, ``**`` spans
    folders, ``[...]`` is a character class."""
    import re
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 1:]:
            j = pattern.index("]", i + 1)
            body = pattern[i + 1:j]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = j + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


# -- changes -----------------------------------------------------------------------------------

def makedirs(uri: str) -> None:
    """A local directory; nothing on an object store (prefixes need no marker)."""
    if not is_remote(uri):
        os.makedirs(uri, exist_ok=True)


def remove(uri: str) -> None:
    """One file or object; absent is fine."""
    if not is_remote(uri):
        with contextlib.suppress(FileNotFoundError):
            os.remove(uri)
        return
    fs, path = arrow_fs(uri)
    if isfile(uri):
        with _errors(uri, "removing"):
            fs.delete_file(path)


def rmtree(uri: str) -> int:
    """A directory and everything under it, or every object under a prefix; the number of
    files removed (0 when there was nothing)."""
    if not is_remote(uri):
        if os.path.islink(uri) or os.path.isfile(uri):
            os.remove(uri)
            return 1
        if not os.path.isdir(uri):
            return 0
        n = sum(len(f) for _, _, f in os.walk(uri))
        shutil.rmtree(uri, ignore_errors=True)
        return n
    fs, path = arrow_fs(uri)
    files = [i.path for i in _listing(uri) if _is_file_info(i)]
    if files:
        try:
            with _errors(uri, "removing"):
                fs.delete_dir(path)  # one bulk request where the store has it
        except FileNotFoundError:  # a store that wants the directory marker it never had
            for p in files:
                with contextlib.suppress(FileNotFoundError), _errors(uri, "removing"):
                    fs.delete_file(p)
    return len(files)


@contextlib.contextmanager
def open_file(uri: str, mode: str = "rb", encoding: str = "utf-8"):
    """A file object: ``rb``/``r`` read, ``wb``/``w`` write. A local write goes to a
    temporary beside the target, renamed over it at the end; a remote write is one upload
    completed when the block ends (seen whole or not at all)."""
    if mode not in ("rb", "r", "wb", "w"):
        raise ValueError(f"open_file: mode expected one of rb, r, wb, w; found {mode!r}")
    if not is_remote(uri):
        if mode.startswith("r"):
            with open(uri, mode, **({"encoding": encoding} if mode == "r" else {})) as f:
                yield f
            return
        from .files import replacing
        with replacing(uri) as tmp:
            with open(tmp, mode, **({"encoding": encoding} if mode == "w" else {})) as f:
                yield f
        return
    if mode.startswith("r"):
        data = read_bytes(uri)
        yield io.StringIO(data.decode(encoding)) if mode == "r" else io.BytesIO(data)
        return
    buf = io.BytesIO()
    if mode == "w":
        text = io.TextIOWrapper(buf, encoding=encoding, write_through=True)
        yield text
        text.flush()
        data = buf.getvalue()
        text.detach()
    else:
        yield buf
        data = buf.getvalue()
    write_bytes(uri, data)


def read_bytes(uri: str) -> bytes:
    if not is_remote(uri):
        with open(uri, "rb") as f:
            return f.read()
    fs, path = arrow_fs(uri)
    with _errors(uri, "reading"):
        with fs.open_input_stream(path) as f:
            return f.read()


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def write_bytes(uri: str, data: bytes, durable: bool = False) -> str:
    """Write a whole file: a local one through a temporary renamed over it, an object in one
    upload. The absolute path or normalised URI."""
    if not is_remote(uri):
        from .files import write_file
        return write_file(uri, data, durable=durable)
    uri = abspath(uri)
    fs, path = arrow_fs(uri)
    with _errors(uri, "writing"):
        with fs.open_output_stream(path) as f:
            f.write(data)
    return uri


def write_text(uri: str, text: str, durable: bool = False) -> str:
    return write_bytes(uri, text.encode("utf-8"), durable=durable)


def copy_file(src: str, dst: str) -> None:
    if not is_remote(src) and not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        shutil.copyfile(src, dst)
        return
    if not is_remote(dst):
        from .files import replacing
        with replacing(dst) as tmp:
            sfs, spath = arrow_fs(src)
            with _errors(src, "downloading"):
                with sfs.open_input_stream(spath) as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 22)
        return
    dfs, dpath = arrow_fs(dst)
    with _errors(dst, "uploading"):
        with dfs.open_output_stream(dpath) as fout:
            if is_remote(src):
                sfs, spath = arrow_fs(src)
                with sfs.open_input_stream(spath) as fin:
                    shutil.copyfileobj(fin, fout, 1 << 22)
            else:
                with open(src, "rb") as fin:
                    shutil.copyfileobj(fin, fout, 1 << 22)


def _parallel(jobs: list, n: int = 8) -> None:
    if len(jobs) <= 1:
        for j in jobs:
            j()
        return
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(n, len(jobs))) as pool:
        for f in [pool.submit(j) for j in jobs]:
            f.result()


def copy_tree(src: str, dst: str) -> dict[str, int]:
    """Copy every file under ``src`` to the same relative path under ``dst`` (any mix of
    local and remote); ``{relative path: size}`` of what was copied."""
    files = list_files(src)
    if not files and not isdir(src):
        raise FileNotFoundError(f"nothing to copy at {describe(src)}")
    if not is_remote(src) and not is_remote(dst):
        shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=False)
        return files
    _parallel([lambda r=rel: copy_file(join(src, r) if r else src, join(dst, r) if r else dst) for rel in files])
    return files


def upload_tree(local: str, uri: str) -> dict[str, int]:
    """Publish a local directory under a remote prefix and check a listing gives back every
    file at its size; raises StorageError naming what is missing. ``{relative path: size}``."""
    sent = copy_tree(local, uri)
    got = list_files(uri)
    missing = sorted(r for r, n in sent.items() if got.get(r) != n)
    if missing:
        raise StorageError(f"uploaded {len(sent)} file(s) to {describe(uri)}, but a listing does not give back "
                           f"{len(missing)} of them at their size (first: {missing[0]})")
    return sent


def cache_dir() -> str:
    """Where remote artifacts are copied to be read locally: ``$TFPIPE_CACHE_DIR`` or
    ``~/.cache/tfpipe``."""
    return os.environ.get("TFPIPE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tfpipe")


def local_file(path: str) -> str:
    """A local path to read a file from: the path itself, or the object's copy in the cache
    (fetched once per size and modification time)."""
    return local_copy(path, version_of(path)) if is_remote(path) else path


def local_copy(uri: str, version: str = "") -> str:
    """A local path holding what ``uri`` holds: the path itself when local, else a copy in
    the cache made once per ``(uri, version)`` (``version``: the artifact's fingerprint;
    artifacts are immutable once LIVE). The copy appears whole (downloaded beside it and
    renamed), so two processes fetching the same URI never see half of it."""
    if not is_remote(uri):
        return uri
    uri = abspath(uri)
    h = hashlib.sha256(f"{uri}\0{version}".encode()).hexdigest()[:32]
    base = os.path.join(cache_dir(), "objects")
    target = os.path.join(base, h, basename(uri) or "root")
    if os.path.exists(target):
        return target
    os.makedirs(os.path.join(base, h), exist_ok=True)
    tmp = os.path.join(base, h, f".{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
    try:
        if isfile(uri):
            copy_file(uri, tmp)
        else:  # a prefix (an artifact with no files is an empty directory)
            os.makedirs(tmp)
            _parallel([lambda r=rel: copy_file(join(uri, r), os.path.join(tmp, r))
                       for rel in list_files(uri)])
        try:
            os.rename(tmp, target)
        except OSError:  # another process put it there first
            if not os.path.exists(target):
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True) if os.path.isdir(tmp) else os.remove(tmp)
    return target
