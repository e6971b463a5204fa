"""Local storage keeps audio and transcripts from the machine's other accounts: the folders it
makes are 0700 and the objects it writes 0600, whatever a permissive umask would allow."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.local import LocalStorage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o002)  # group-writable by default, as on many desktops
    yield
    os.umask(previous)


def test_objects_written_are_0600_in_folders_that_are_0700(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data" / "storage")
    storage.put_bytes("transcripts/job-1/job-1.txt", b"private words")
    with storage.writer("chunks/job-1/0.wav") as out:
        out.write(b"RIFF")

    root = tmp_path / "data" / "storage"
    for folder in (
        tmp_path / "data",
        root,
        root / "transcripts",
        root / "transcripts" / "job-1",
        root / "chunks",
    ):
        assert mode(folder) == 0o700, folder
    assert mode(root / "transcripts" / "job-1" / "job-1.txt") == 0o600
    assert mode(root / "chunks" / "job-1" / "0.wav") == 0o600


def test_a_moved_object_stays_0600_in_a_0700_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("uploads/u/a.wav", b"RIFF")
    storage.move("uploads/u/a.wav", "jobs/j/source.wav")
    assert mode(tmp_path / "storage" / "jobs") == mode(tmp_path / "storage" / "jobs" / "j") == 0o700
    assert mode(tmp_path / "storage" / "jobs" / "j" / "source.wav") == 0o600
