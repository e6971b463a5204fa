"""The storage contract (storage/base.py), one test body run against every backend.

The S3 run talks to a real S3-compatible server on loopback (moto's standalone server), with a
bucket of its own per test.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from core.config import Settings
from core.media import probe
from core.signing import Purpose, UrlSigner
from storage.base import InvalidKey, Storage
from storage.local import LocalStorage
from storage.s3 import PART_SIZE, RANGE_BLOCK, S3Storage
from tests import s3 as s3_server
from tests.audio_builders import silence, write_wav

MIB = 1024 * 1024
BASE_URL = "http://api.test"


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
        return LocalStorage(tmp_path / "objects", local_signer(tmp_path), BASE_URL)
    return s3_storage(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"), tmp_path)


def local_signer(tmp_path: Path) -> UrlSigner:
    return UrlSigner(Settings(environment="test", data_dir=tmp_path, jwt_secret="s" * 48))


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


def test_list_folders_in_key_order_from_a_cursor(storage):
    for key in ("jobs/b/source.wav", "jobs/a/chunks/00000.flac", "jobs/a-2/source.wav", "jobs/c/x/y"):
        storage.put_bytes(key, b"1")
    storage.put_bytes("jobs/loose.wav", b"1")  # an object, not a folder
    storage.put_bytes("uploads/u/z.wav", b"1")
    # `a-2/` sorts before `a/` as keys do ('-' before '/').
    assert storage.list_folders("jobs") == ["a-2", "a", "b", "c"]
    assert storage.list_folders("jobs", after="a-2") == ["a", "b", "c"]
    assert storage.list_folders("jobs", after="a", limit=1) == ["b"]
    assert storage.list_folders("jobs", after="c") == []
    assert storage.list_folders("jobs/a") == ["chunks"]
    assert storage.list_folders("nothing") == []


def test_list_folders_past_one_page(storage):
    for i in range(1005):  # more than one ListObjects page
        storage.put_bytes(f"jobs/{i:05d}/source.wav", b"")
    assert storage.list_folders("jobs", limit=2000) == [f"{i:05d}" for i in range(1005)]
    assert storage.list_folders("jobs", after="00999", limit=3) == ["01000", "01001", "01002"]


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


# --- presigned uploads and downloads ---------------------------------------------------------------


def send(form, content: bytes) -> httpx.Response:
    """What a client does with an upload form: PUT the body, or POST the fields and then the file."""
    if form.method == "POST":
        return httpx.post(form.url, data=form.fields, files={"file": ("upload", content)})
    return httpx.put(form.url, content=content, headers=form.headers)


def test_presigned_upload_form(storage, tmp_path):
    form = storage.presign_upload("uploads/u/a.wav", 1000, 600, "audio/wav")
    assert abs((form.expires_at - datetime.now(UTC)).total_seconds() - 600) < 5
    if isinstance(storage, LocalStorage):
        # The API's route takes the body (tests/api/test_uploads.py); the token carries key and bound.
        assert form.method == "PUT" and form.headers == {"Content-Type": "audio/wav"}
        assert form.url.startswith(f"{BASE_URL}/v1/uploads/")
        claims = local_signer(tmp_path).verify(Purpose.UPLOAD, form.url.rsplit("/", 1)[1])
        assert claims == {"k": "uploads/u/a.wav", "n": 1000}
        return
    assert form.method == "POST"
    assert send(form, b"x" * 1000).is_success
    assert b"".join(storage.iter_bytes("uploads/u/a.wav")) == b"x" * 1000
    head = storage.client.head_object(Bucket=storage.bucket, Key="uploads/u/a.wav")
    assert head["ContentType"] == "audio/wav"


def test_s3_upload_form_carries_a_signed_size_bound(s3_endpoint, s3_bucket, tmp_path):
    """S3 refuses a POST whose file is outside the signed policy's `content-length-range`
    (`EntityTooLarge`), a bound a presigned PUT cannot carry. moto (5.2) accepts POSTs without
    evaluating the policy, so what is checked here is the signed policy S3 would enforce."""
    storage = s3_storage(s3_endpoint, s3_bucket, tmp_path)
    form = storage.presign_upload("uploads/u/a.wav", 1000, 600, "audio/wav")
    policy = json.loads(base64.b64decode(form.fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1, 1000] in conditions
    assert {"key": "uploads/u/a.wav"} in conditions and {"bucket": s3_bucket} in conditions
    assert {"Content-Type": "audio/wav"} in conditions
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert abs((expiration - form.expires_at).total_seconds()) < 5
    # Signed with the credentials' key: altering the bound would break the signature.
    secret = s3_server.CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert form.fields["x-amz-signature"] == _sigv4(
        secret, form.fields["x-amz-credential"], form.fields["policy"]
    )


def _sigv4(secret: str, credential: str, policy: str) -> str:
    _, date, region, service, terminator = credential.split("/")
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()


def test_presigned_download(storage, tmp_path):
    storage.put_bytes("jobs/p/transcript.txt", b"hello")
    url = storage.presign_download("jobs/p/transcript.txt", 60, download_as="p.txt", media_type="text/plain")
    if isinstance(storage, LocalStorage):  # served by the API's route (tests/api/test_downloads.py)
        assert url.startswith(f"{BASE_URL}/v1/downloads/")
        claims = local_signer(tmp_path).verify(Purpose.DOWNLOAD, url.rsplit("/", 1)[1])
        assert claims == {"k": "jobs/p/transcript.txt", "name": "p.txt", "type": "text/plain"}
        return
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == b"hello"
    assert got.headers["content-disposition"] == 'attachment; filename="p.txt"'
    assert got.headers["content-type"].startswith("text/plain")


# --- seekable reads ----------------------------------------------------------------------------------


def test_seekable_reads(storage):
    data = bytes(range(256)) * 4096  # 1 MiB
    storage.put_bytes("jobs/s/source.wav", data)
    with storage.open_seekable("jobs/s/source.wav") as f:
        assert f.seekable()
        assert f.seek(0, 2) == len(data)
        f.seek(1000)
        assert f.read(10) == data[1000:1010]
        f.seek(-5, 2)
        assert f.read() == data[-5:]
        assert f.read(10) == b""
    with pytest.raises(FileNotFoundError), storage.open_seekable("jobs/s/none.wav"):
        pass


def test_s3_probe_reads_only_the_head_of_an_object(s3_endpoint, s3_bucket, tmp_path):
    storage = s3_storage(s3_endpoint, s3_bucket, tmp_path)
    source = tmp_path / "long.wav"
    write_wav(source, silence(300))  # 9.6 MB
    with storage.writer("uploads/u/long.wav") as out:
        out.write(source.read_bytes())
    sizes = s3_server.served_bytes(storage.client)

    with storage.open_seekable("uploads/u/long.wav") as f:
        info = probe(f)

    assert info.duration_seconds == pytest.approx(300, abs=0.1)
    assert (info.sample_rate, info.channels, info.codec) == (16000, 1, "pcm_s16le")
    # A few blocks of ranged reads (FFmpeg's look at the stream), not the 9.6 MB object.
    assert 0 < sum(sizes) <= 4 * RANGE_BLOCK, sizes
    assert all(size <= RANGE_BLOCK for size in sizes), sizes
