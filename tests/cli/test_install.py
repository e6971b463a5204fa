"""`pip install .` from a checkout, into a fresh virtual environment, gives the `verbatim` command
and the typed client module, and nothing of the service (which installs from requirements.txt).

It needs the package index (pip fetches setuptools, httpx and rich): unreachable, the test skips
locally and fails in CI.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

OFFLINE = ("Could not find a version", "NewConnectionError", "Temporary failure in name resolution")
# What `pip install .` needs of a checkout is its source; caches, the service's data and the
# development venv stay behind (and a build in a copy leaves the checkout untouched).
LEFT_BEHIND = shutil.ignore_patterns(
    ".venv", "data", ".git", "*_cache", ".hypothesis", "__pycache__", "build", "*.egg-info"
)


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_pip_install_gives_the_verbatim_command_and_the_client_alone(tmp_path: Path) -> None:
    checkout, venv = tmp_path / "checkout", tmp_path / "venv"
    shutil.copytree(ROOT, checkout, ignore=LEFT_BEHIND)
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", checkout)
    if installed.returncode != 0 and any(s in installed.stderr for s in OFFLINE) and not os.environ.get("CI"):
        pytest.skip(f"the package index is unreachable: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr

    helped = run(venv / "bin" / "verbatim", "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("transcribe", "jobs", "job", "cancel", "login"):
        assert command in helped.stdout
    assert run(venv / "bin" / "verbatim", "transcribe", "--help").returncode == 0

    probe = (
        "import importlib.util as u, pathlib, verbatim_client as v;"
        "print(pathlib.Path(v.__file__).parent.joinpath('py.typed').is_file(),"
        " [m for m in ('api', 'core', 'worker', 'repositories', 'storage', 'scripts', 'tests',"
        " 'faster_whisper') if u.find_spec(m)])"
    )
    found = run(venv / "bin" / "python", "-c", probe, cwd=tmp_path)  # not the checkout's folder
    assert found.stdout.split(maxsplit=1) == ["True", "[]\n"], found.stderr
