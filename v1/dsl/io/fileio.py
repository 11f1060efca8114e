"""``tfx.v1.dsl.io.fileio``: file operations on local paths and on every filesystem
TensorFlow's ``tf.io.gfile`` knows (``gs://``, ...), as TFX's own fileio delegates to it
when TensorFlow is installed. A missing file raises ``NotFoundError``, whichever
filesystem it is on. TensorFlow is imported on first use."""
from __future__ import annotations

import functools
from typing import Union

__all__ = ["NotFoundError", "PathType", "copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir",
           "open", "remove", "rename", "rmtree", "stat", "walk"]

PathType = Union[bytes, str]


class NotFoundError(FileNotFoundError):
    """The path does not exist."""


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def _not_found_as_ours(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        import tensorflow as tf
        try:
            return fn(*args, **kwargs)
        except tf.errors.NotFoundError as e:
            raise NotFoundError(f"{fn.__name__}: {e.message}") from None
    return call


def open(path: PathType, mode: str = "r"):  # noqa: A001  (TFX's name)
    """A file object (``tf.io.gfile.GFile``) for ``path``."""
    return _gfile().GFile(path, mode)


@_not_found_as_ours
def copy(src: PathType, dst: PathType, overwrite: bool = False) -> None:
    _gfile().copy(src, dst, overwrite=overwrite)


def exists(path: PathType) -> bool:
    return _gfile().exists(path)


def glob(pattern: PathType) -> list:
    return _gfile().glob(pattern)


def isdir(path: PathType) -> bool:
    return _gfile().isdir(path)


@_not_found_as_ours
def listdir(path: PathType) -> list:
    return _gfile().listdir(path)


def makedirs(path: PathType) -> None:
    _gfile().makedirs(path)


def mkdir(path: PathType) -> None:
    _gfile().mkdir(path)


@_not_found_as_ours
def remove(path: PathType) -> None:
    _gfile().remove(path)


@_not_found_as_ours
def rename(src: PathType, dst: PathType, overwrite: bool = False) -> None:
    _gfile().rename(src, dst, overwrite=overwrite)


@_not_found_as_ours
def rmtree(path: PathType) -> None:
    _gfile().rmtree(path)


@_not_found_as_ours
def stat(path: PathType):
    return _gfile().stat(path)


def walk(top: PathType, topdown: bool = True, onerror=None):
    return _gfile().walk(top, topdown=topdown, onerror=onerror)
