"""The pipeline image is built from the same pinned environment as `make install`.
(No Docker engine runs here, so the Dockerfile is checked against the Makefile and
pyproject.toml instead of built.)"""
import os
import re
import shlex
import tomllib

from tests.conftest import REPO


def _read(name):
    with open(os.path.join(REPO, name)) as f:
        return f.read()


def _instructions(text):
    """Dockerfile instructions with continuation lines joined: [(KEYWORD, args)]."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            kw, _, rest = line.partition(" ")
            out.append((kw.upper(), rest.strip()))
    return out


def _pip_installs(commands):
    """Each `pip install` as (constraint files, editable?, target without extras)."""
    found = []
    for cmd in commands:
        for part in re.split(r"&&|;", cmd):
            words = shlex.split(part.replace("$(BIN)/", ""))
            if "pip" not in words or "install" not in words or "--upgrade" in words:
                continue
            args = words[words.index("install") + 1:]
            cons = [args[i + 1] for i, a in enumerate(args) if a == "-c"]
            editable = "-e" in args
            targets = [a for i, a in enumerate(args)
                       if not a.startswith("-") and (i == 0 or args[i - 1] not in ("-c",))]
            found.append((cons, editable, [re.sub(r"\[.*\]$", "", t) for t in targets]))
    return found


def _package_folder(pkg: str, package_dir: dict) -> str:
    """The repository folder of an import package under setuptools' package-dir mapping."""
    parts = pkg.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in package_dir:
            return "/".join([package_dir[head], *parts[i:]])
    return "/".join(parts)


def test_dockerfile_installs_the_package_like_the_makefile():
    docker = _instructions(_read("Dockerfile"))
    make = _read("Makefile")
    stamp_recipe = make.split("$(STAMP): pyproject.toml constraints.txt", 1)[1].split("\n\n", 1)[0]
    make_installs = _pip_installs(stamp_recipe.splitlines())
    docker_installs = _pip_installs([a for k, a in docker if k == "RUN"])
    assert make_installs == [(["constraints.txt"], True, ["."])]
    assert docker_installs == make_installs  # same lock file, same editable install of the package
    copied = " ".join(a for k, a in docker if k == "COPY")
    assert "constraints.txt" in copied.split() and "pyproject.toml" in copied.split()


def test_dockerfile_python_and_packages_match_the_project():
    docker = _instructions(_read("Dockerfile"))
    base = [a for k, a in docker if k == "FROM"]
    assert len(base) == 1 and re.match(r"python:3\.11(\.\d+)?-", base[0]), base
    project = tomllib.loads(_read("pyproject.toml"))
    assert project["project"]["requires-python"].startswith(">=3.11")
    copied = [a.split()[0].rstrip("/") for k, a in docker if k == "COPY"]
    st = project["tool"]["setuptools"]
    install = next(i for i, (k, a) in enumerate(docker) if k == "RUN" and " -e ." in a)
    before = [a.split()[0] for k, a in docker[:install] if k == "COPY"]
    for pkg in st["packages"]:
        folder = _package_folder(pkg, st["package-dir"])
        # the editable install needs every package folder; the code itself comes after it
        assert f"{folder}/__init__.py" in before, f"{folder}/__init__.py ({pkg}) is not copied before the install"
        assert folder.split("/")[0] in copied, f"folder {folder} ({pkg}) is not copied into the image"
    ignored = _read(".dockerignore").split()
    assert ".venv/" in ignored and ".venv-airflow/" in ignored  # never ship a local venv
