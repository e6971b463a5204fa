"""Objects in one S3 bucket (AWS S3, MinIO or any S3-compatible server), through boto3.

Writes stay all-or-nothing: a small body is one `put_object` when the block exits; a body larger
than one part becomes a multipart upload, completed when the block exits cleanly and aborted
otherwise, so a failed write leaves neither an object nor billable orphan parts behind.
"""

import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from core.config import Settings
from core.logging import get_logger
from storage.base import ObjectWriter, UploadForm, check_key

log = get_logger(__name__)

# S3 parts must be at least 5 MiB (all but the last); 8 MiB is boto3's own transfer default.
PART_SIZE = 8 * 1024 * 1024
DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
# A seekable reader fetches at least this much per GET: few round trips for a header, little waste.
RANGE_BLOCK = 256 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def make_s3_client(settings: Settings) -> Any:
    """A client for the configured endpoint. Credentials come from boto3's own chain (AWS_* vars,
    shared config files, instance roles), so no secret passes through our settings."""
    config = Config(
        signature_version="s3v4",
        retries={"max_attempts": 5, "mode": "standard"},
        # A custom endpoint (MinIO, a test server) rarely serves virtual-host bucket names.
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config
    )


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@contextmanager
def _missing_as_not_found(key: str) -> Iterator[None]:
    """S3's "no such key" as the contract's `FileNotFoundError`; other errors as they are."""
    try:
        yield
    except ClientError as exc:
        if _is_missing(exc):
            raise FileNotFoundError(key) from exc
        raise


class _MultipartWriter:
    """Buffers one part; past that, streams parts of a multipart upload it starts on demand."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self.buffer += data
        # Strictly larger: a body of exactly one part is still a single put_object.
        while len(self.buffer) > self.part_size:
            self._upload_part(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        if self.upload_id is None:
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = str(created["UploadId"])
        number = len(self.parts) + 1
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def commit(self) -> None:
        if self.upload_id is None:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
            return
        if self.buffer:
            self._upload_part(bytes(self.buffer))
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        if self.upload_id is None:
            return
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except ClientError as exc:  # the original error matters more; a lifecycle rule can clean up
            log.warning("storage.abort_failed", key=self.key, error=str(exc))


class _RangedReader(io.RawIOBase):
    """One object read as ranged GETs: only the bytes asked for cross the network.

    Every GET names the ETag seen first, so a reader never mixes two versions of an object."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.name = key  # the key's suffix helps FFmpeg pick a demuxer, as a file's extension does
        with _missing_as_not_found(key):
            head = client.head_object(Bucket=bucket, Key=key)
        self.length, self.etag = int(head["ContentLength"]), str(head["ETag"])
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self.position = base + offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        end = min(self.position + len(buffer), self.length)
        if end <= self.position:
            return 0
        response = self.client.get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end - 1}", IfMatch=self.etag
        )
        with response["Body"] as body:
            data = body.read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


class S3Storage:
    """Objects under `key` in one bucket."""

    def __init__(self, client: Any, bucket: str, *, part_size: int = PART_SIZE) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size = part_size

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Storage":
        return cls(make_s3_client(settings), settings.s3_bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (process start-up, not per request)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if not _is_missing(exc):
                raise
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:  # another process created it first
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        log.info("storage.bucket_created", bucket=self.bucket, region=region)

    @contextmanager
    def writer(self, key: str) -> Iterator[ObjectWriter]:
        out = _MultipartWriter(self.client, self.bucket, check_key(key), self.part_size)
        try:
            yield out
            out.commit()
        except BaseException:
            out.abort()
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with _missing_as_not_found(key):
            response = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        body = response["Body"]
        try:
            yield cast(BinaryIO, body)
        finally:
            body.close()

    @contextmanager
    def open_seekable(self, key: str) -> Iterator[BinaryIO]:
        reader = io.BufferedReader(_RangedReader(self.client, self.bucket, check_key(key)), RANGE_BLOCK)
        with reader:
            yield cast(BinaryIO, reader)

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        # The key's suffix is kept: PyAV picks a demuxer by extension when probing is unsure.
        with (
            self.open(key) as body,
            tempfile.NamedTemporaryFile(suffix=PurePosixPath(key).suffix, prefix="verbatim-") as tmp,
        ):
            shutil.copyfileobj(body, tmp, length=1 << 20)
            tmp.flush()
            yield Path(tmp.name)

    def iter_bytes(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with self.open(key) as f:
            while block := f.read(chunk_size):
                yield block

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def size(self, key: str) -> int:
        with _missing_as_not_found(key):
            head = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        return int(head["ContentLength"])

    def move(self, source: str, target: str) -> None:
        # A server-side copy (multipart above the transfer threshold), then the delete: the bytes
        # never pass through this process.
        origin = {"Bucket": self.bucket, "Key": check_key(source)}
        with _missing_as_not_found(source):
            self.client.copy(origin, self.bucket, check_key(target))
        self.client.delete_object(Bucket=self.bucket, Key=source)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def delete_prefix(self, prefix: str) -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=check_key(prefix) + "/"
        )
        keys = (item["Key"] for page in pages for item in page.get("Contents", []))
        removed = 0
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                removed += self._delete_batch(batch)
                batch = []
        if batch:
            removed += self._delete_batch(batch)
        return removed

    def list_folders(self, prefix: str, *, after: str | None = None, limit: int = 1000) -> list[str]:
        base = check_key(prefix) + "/"
        options = {"Bucket": self.bucket, "Prefix": base, "Delimiter": "/"}
        if after is not None:
            # `0` is the character after `/`: this key sorts after every key of the folder `after`.
            options["StartAfter"] = f"{base}{after}0"
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(**options):
            names.extend(p["Prefix"][len(base) : -1] for p in page.get("CommonPrefixes", []))
            if len(names) >= limit:
                break
        return names[:limit]

    def _delete_batch(self, keys: list[str]) -> int:
        response = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        if errors := response.get("Errors"):
            raise OSError(f"could not delete {len(errors)} objects, first: {errors[0]}")
        return len(keys)

    def ping(self) -> None:
        # HEAD on the bucket: cheap, writes nothing, and fails on bad credentials or a lost bucket.
        self.client.head_bucket(Bucket=self.bucket)

    def presign_download(self, key: str, seconds: int, *, download_as: str, media_type: str) -> str:
        """S3's own presigned GET; the attachment name and type are part of the signature."""
        params = {
            "Bucket": self.bucket,
            "Key": check_key(key),
            "ResponseContentDisposition": f'attachment; filename="{download_as}"',
            "ResponseContentType": media_type,
        }
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))

    def presign_upload(self, key: str, max_bytes: int, seconds: int, content_type: str) -> UploadForm:
        """A presigned POST (an HTML-form upload): unlike a presigned PUT, its signed policy bounds
        the body, so S3 itself refuses more than `max_bytes` (`EntityTooLarge`)."""
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
        post = self.client.generate_presigned_post(
            self.bucket,
            check_key(key),
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=seconds,
        )
        fields = {str(name): str(value) for name, value in post["fields"].items()}
        return UploadForm(url=str(post["url"]), method="POST", expires_at=expires_at, fields=fields)
