"""The storage contract (storage/base.py), one test body run against every backend.

The S3 run talks to a real S3-compatible server on loopback (moto's standalone server), with a
bucket of its own per test.
"""

from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from core.config import Settings
from storage.base import InvalidKey, Storage
from storage.local import LocalStorage
from storage.s3 import PART_SIZE, S3Storage
from tests import s3 as s3_server

MIB = 1024 * 1024


def s3_storage(endpoint: str, bucket: str, tmp_path: Path, region: str = "us-east-1") -> S3Storage:
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        storage_backend="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_region=region,
    )
    storage = S3Storage.from_settings(settings)
    storage.ensure_bucket()
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    return s3_storage(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"), tmp_path)


def leftovers(storage: Storage) -> list[str]:
    """Everything the backend holds: files and folders (local); objects and pending uploads (S3)."""
    if isinstance(storage, LocalStorage):
        return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*"))
    assert isinstance(storage, S3Storage)
    objects = s3_server.object_keys(storage.client, storage.bucket)
    uploads = [f"pending upload {k}" for k in s3_server.pending_uploads(storage.client, storage.bucket)]
    return sorted(objects + uploads)


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
        assert path.suffix == ".wav"  # PyAV may pick the demuxer by extension
    with storage.open("jobs/a/source.wav") as f:
        assert f.read(3) == b"\x00\x00\x00"


def test_a_failed_write_leaves_nothing(storage):
    with pytest.raises(RuntimeError), storage.writer("jobs/a/half.wav") as out:
        out.write(b"x" * 10)
        raise RuntimeError("client went away")
    assert not storage.exists("jobs/a/half.wav")
    assert leftovers(storage) == []


def test_a_failed_rewrite_keeps_the_old_object(storage):
    storage.put_bytes("k/v", b"old")
    with pytest.raises(RuntimeError), storage.writer("k/v") as out:
        out.write(b"new but unfinished")
        raise RuntimeError
    assert b"".join(storage.iter_bytes("k/v")) == b"old"


def test_a_large_streamed_write(storage):
    block = bytes(range(256)) * 4096  # 1 MiB
    with storage.writer("jobs/big/source.wav") as out:
        for _ in range(9):
            out.write(block)
    assert sum(len(b) for b in storage.iter_bytes("jobs/big/source.wav", chunk_size=MIB)) == 9 * MIB
    with storage.open("jobs/big/source.wav") as f:
        f.read(8 * MIB)
        assert f.read() == block
    if isinstance(storage, S3Storage):
        # Larger than one part, so streamed as a multipart upload: S3 marks its ETag "-<parts>".
        head = storage.client.head_object(Bucket=storage.bucket, Key="jobs/big/source.wav")
        assert head["ETag"].strip('"').endswith("-2"), head["ETag"]
    # Nothing else: no partial file, no pending upload.
    assert [k for k in leftovers(storage) if k.startswith(("jobs/big/", "pending"))] == [
        "jobs/big/source.wav"
    ]


def test_a_failed_large_write_leaves_nothing(storage):
    with pytest.raises(RuntimeError), storage.writer("jobs/big/half.wav") as out:
        out.write(b"x" * (PART_SIZE + MIB))
        if isinstance(storage, S3Storage):  # a part is up: the upload must be aborted, not left
            assert s3_server.pending_uploads(storage.client, storage.bucket) == ["jobs/big/half.wav"]
        raise RuntimeError("client went away")
    assert not storage.exists("jobs/big/half.wav")
    assert leftovers(storage) == []


def test_delete_and_delete_prefix(storage):
    for name in ("jobs/a/source.wav", "jobs/a/chunks/00000.wav", "jobs/b/source.wav"):
        storage.put_bytes(name, b"1")
    storage.put_bytes("jobs/ab/source.wav", b"1")  # shares the prefix's text, not its folder
    storage.delete("jobs/missing")  # not an error
    assert storage.delete_prefix("jobs/a") == 2
    assert not storage.exists("jobs/a/source.wav") and storage.exists("jobs/b/source.wav")
    assert storage.exists("jobs/ab/source.wav")
    assert storage.delete_prefix("jobs/a") == 0
    assert not [k for k in leftovers(storage) if k == "jobs/a" or k.startswith("jobs/a/")]
    storage.delete("jobs/b/source.wav")
    storage.delete("jobs/ab/source.wav")
    assert leftovers(storage) == []


def test_delete_prefix_of_many_objects(storage):
    for i in range(1005):  # more than one DeleteObjects batch
        storage.put_bytes(f"jobs/many/chunks/{i:05d}.wav", b"")
    assert storage.delete_prefix("jobs/many") == 1005
    assert leftovers(storage) == []


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "jobs/../../x", "jobs//x", "jobs/./x"])
def test_keys_cannot_escape_the_root(storage, key):
    with pytest.raises(InvalidKey):
        storage.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        storage.exists(key)
    assert leftovers(storage) == []


def test_missing_objects(storage):
    with pytest.raises(FileNotFoundError), storage.local_path("nope"):
        pass
    with pytest.raises(FileNotFoundError), storage.open("jobs/nope.wav"):
        pass
    assert not storage.exists("nope")


def test_ping_leaves_nothing_behind(storage):
    storage.ping()
    assert leftovers(storage) == []


# --- S3 only ---------------------------------------------------------------------------------------


def test_s3_ping_fails_when_the_bucket_is_gone(s3_endpoint, s3_bucket, tmp_path):
    storage = s3_storage(s3_endpoint, s3_bucket, tmp_path)
    storage.client.delete_bucket(Bucket=s3_bucket)
    with pytest.raises(ClientError):
        storage.ping()


def test_s3_bucket_is_created_once_in_its_region(s3_endpoint, s3_bucket, tmp_path):
    storage = s3_storage(s3_endpoint, s3_bucket, tmp_path, region="eu-west-1")
    storage.ensure_bucket()  # already there: nothing to do
    location = storage.client.get_bucket_location(Bucket=s3_bucket)["LocationConstraint"]
    assert location == "eu-west-1"


def test_s3_presigned_urls(s3_endpoint, s3_bucket, tmp_path):
    storage = s3_storage(s3_endpoint, s3_bucket, tmp_path)
    put = httpx.put(storage.presign_put("jobs/p/source.wav", expires=60), content=b"uploaded")
    assert put.status_code == 200, put.text
    assert b"".join(storage.iter_bytes("jobs/p/source.wav")) == b"uploaded"
    get = httpx.get(storage.presign_get("jobs/p/source.wav", expires=60))
    assert get.status_code == 200 and get.content == b"uploaded"


def test_size_and_move(storage):
    storage.put_bytes("uploads/u1/abc.wav", b"x" * 1234)
    assert storage.size("uploads/u1/abc.wav") == 1234
    storage.move("uploads/u1/abc.wav", "jobs/j1/source.wav")
    assert not storage.exists("uploads/u1/abc.wav")
    assert storage.size("jobs/j1/source.wav") == 1234
    assert b"".join(storage.iter_bytes("jobs/j1/source.wav")) == b"x" * 1234
    assert leftovers(storage) == (
        ["jobs", "jobs/j1", "jobs/j1/source.wav"]
        if isinstance(storage, LocalStorage)
        else ["jobs/j1/source.wav"]
    )


def test_size_and_move_of_a_missing_object(storage):
    with pytest.raises(FileNotFoundError):
        storage.size("uploads/u1/none.wav")
    with pytest.raises(FileNotFoundError):
        storage.move("uploads/u1/none.wav", "jobs/j1/source.wav")
    assert leftovers(storage) == []
