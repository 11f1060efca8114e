"""Credentials by reference: a metadata connection names where its password is, never the
password itself, so nothing compiled (the IR, an Airflow IR file, a KFP pipeline spec) ever
holds a secret. The reference is resolved when a task connects:

- ``password_env``: the name of an environment variable (default for URLs:
  ``TFPIPE_METADATA_PASSWORD``);
- ``password_file``: a file holding it (a mounted Kubernetes secret, a Docker secret);
- ``password_secret``: a Google Secret Manager version,
  ``projects/P/secrets/S/versions/V`` (needs ``google-cloud-secret-manager`` where it runs).

An inline ``password`` (or a URL with ``user:password@``) is refused with an error that
says how to pass it instead."""
from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["CredentialError", "PASSWORD_ENV", "check_no_inline_secrets", "check_env_secrets", "resolve_password"]

PASSWORD_ENV = "TFPIPE_METADATA_PASSWORD"
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@", re.I)
_SECRET_KEYS = ("password", "passwd", "pwd")


class CredentialError(ValueError):
    """A secret given inline where a reference belongs, or a reference that cannot be resolved."""


def _how() -> str:
    return (f"pass it by reference instead: \"password_env\": \"VAR\" (an environment variable; for a URL "
            f"${PASSWORD_ENV}), \"password_file\": \"/path\", or \"password_secret\": "
            f"\"projects/P/secrets/S/versions/V\"")


def check_no_inline_secrets(value: Any, where: str, path: str = "") -> None:
    """Raise CredentialError if ``value`` (JSON-like data) holds a password inline: a key
    named password/passwd/pwd with a value, or a URL with ``user:password@``."""
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and k.lower() in _SECRET_KEYS and v not in (None, ""):
                raise CredentialError(f"{where}: {p} holds a password inline; a compiled pipeline must never "
                                      f"contain a secret; {_how()}")
            check_no_inline_secrets(v, where, p)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_no_inline_secrets(v, where, f"{path}[{i}]")
    elif isinstance(value, str) and _URL_WITH_PASSWORD.match(value.strip()):
        raise CredentialError(f"{where}: {path or 'a value'} is a URL with a password in it; drop it from the "
                              f"URL and {_how()}")


_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL", re.I)


def check_env_secrets(env: dict, where: str) -> None:
    """Environment variables a compiled pipeline passes to its tasks (``settings["env"]``)
    must not carry secrets: a variable named like one (…PASSWORD, …SECRET, …TOKEN) with a
    value is refused; the task's platform should inject it (a Kubernetes secret, Secret
    Manager) instead."""
    for k, v in (env or {}).items():
        if _SECRET_ENV.search(str(k)) and v not in (None, ""):
            raise CredentialError(f"{where}: environment variable {k} would be written, with its value, into "
                                  f"the compiled pipeline; inject it where the task runs instead (a Kubernetes "
                                  f"secret, Secret Manager), or pass a reference such as {k}_FILE=/path")


def resolve_password(cfg: dict, where: str) -> str:
    """The password a connection config refers to ('' when it names none)."""
    if cfg.get("password_env"):
        name = cfg["password_env"]
        if name not in os.environ:
            raise CredentialError(f"{where}: the password is to come from the environment variable {name}, "
                                  f"which is not set in this process")
        return os.environ[name]
    if cfg.get("password_file"):
        path = cfg["password_file"]
        try:
            with open(path) as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise CredentialError(f"{where}: cannot read the password file {path}: {e.strerror}") from None
    if cfg.get("password_secret"):
        ref = cfg["password_secret"]
        try:
            from google.cloud import secretmanager
        except ImportError:
            raise CredentialError(f"{where}: password_secret {ref} needs google-cloud-secret-manager installed "
                                  f"where the task runs") from None
        client = secretmanager.SecretManagerServiceClient()
        return client.access_secret_version(name=ref).payload.data.decode()
    return ""
