"""The repository passes ruff (its rules are in pyproject.toml), also when pytest is run
directly rather than through `make test`."""
import subprocess
import sys

from tests.conftest import REPO


def test_ruff_check_passes():
    # --no-cache: the tests write nothing into the repository
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", REPO],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, f"ruff check exited {p.returncode}:\n{p.stdout}{p.stderr}"
