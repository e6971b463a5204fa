"""The storage contract, on the local-filesystem backend."""

import pytest

from storage.base import InvalidKey
from storage.local import LocalStorage


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "objects")


def test_streamed_write_then_read(storage):
    with storage.writer("jobs/a/source.wav") as out:
        for i in range(100):
            out.write(bytes([i]) * 1000)
    assert storage.exists("jobs/a/source.wav")
    assert b"".join(storage.iter_bytes("jobs/a/source.wav", chunk_size=777)) == b"".join(
        bytes([i]) * 1000 for i in range(100)
    )
    with storage.local_path("jobs/a/source.wav") as path:
        assert path.stat().st_size == 100_000


def test_a_failed_write_leaves_nothing(storage):
    with pytest.raises(RuntimeError), storage.writer("jobs/a/half.wav") as out:
        out.write(b"x" * 10)
        raise RuntimeError("client went away")
    assert not storage.exists("jobs/a/half.wav")
    assert list(storage.root.rglob("*")) == []


def test_a_failed_rewrite_keeps_the_old_object(storage):
    storage.put_bytes("k/v", b"old")
    with pytest.raises(RuntimeError), storage.writer("k/v") as out:
        out.write(b"new but unfinished")
        raise RuntimeError
    assert b"".join(storage.iter_bytes("k/v")) == b"old"


def test_delete_and_delete_prefix(storage):
    for name in ("jobs/a/source.wav", "jobs/a/chunks/00000.wav", "jobs/b/source.wav"):
        storage.put_bytes(name, b"1")
    storage.delete("jobs/missing")  # not an error
    assert storage.delete_prefix("jobs/a") == 2
    assert not storage.exists("jobs/a/source.wav") and storage.exists("jobs/b/source.wav")
    assert storage.delete_prefix("jobs/a") == 0
    assert not (storage.root / "jobs" / "a").exists()
    storage.delete("jobs/b/source.wav")
    assert list(storage.root.rglob("*")) == []


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "jobs/../../x", "jobs//x", "jobs/./x"])
def test_keys_cannot_escape_the_root(storage, key):
    with pytest.raises(InvalidKey):
        storage.put_bytes(key, b"x")


def test_local_path_of_a_missing_object(storage):
    with pytest.raises(FileNotFoundError), storage.local_path("nope"):
        pass
