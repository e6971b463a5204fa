import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from core.files import create_private_file, private_dir
from core.signing import (
    DOWNLOAD_PATH,
    UPLOAD_PATH,
    Claims,
    Purpose,
    UrlSigner,
    download_claims,
    upload_claims,
)
from storage.base import ObjectWriter, UploadForm, check_key


class LocalStorage:
    """Objects as files under one root folder, readable by this service's user only: folders it
    makes are 0700, objects 0600 (core/files.py).

    A folder has no URLs of its own: presigned ones are the API's (`base_url`), carrying a token of
    `signer`'s that the API's upload and download routes check and serve."""

    def __init__(self, root: Path, signer: UrlSigner | None = None, base_url: str = "") -> None:
        self.root = private_dir(root.resolve())
        self.signer, self.base_url = signer, base_url

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextmanager
    def writer(self, key: str) -> Iterator[ObjectWriter]:
        final = self._path(key)
        private_dir(final.parent)
        partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial")
        try:
            with os.fdopen(create_private_file(partial), "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)
            self._prune(final.parent)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with self._path(key).open("rb") as f:
            yield f

    def open_seekable(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self.open(key)  # a file is seekable, and reads only what is read

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path

    def iter_bytes(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with self.open(key) as f:
            while block := f.read(chunk_size):
                yield block

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path.stat().st_size

    def move(self, source: str, target: str) -> None:
        origin, final = self._path(source), self._path(target)
        if not origin.is_file():
            raise FileNotFoundError(source)
        private_dir(final.parent)
        origin.replace(final)  # one rename: both keys live under the same root
        self._prune(origin.parent)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        self._prune(folder.parent)
        return count

    def list_folders(self, prefix: str, *, after: str | None = None, limit: int = 1000) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        # Sorted as their keys are (`name/...`), the order S3 lists them in.
        keys = sorted(f"{p.name}/" for p in folder.iterdir() if p.is_dir())
        return [key[:-1] for key in keys if after is None or key > f"{after}/"][:limit]

    def presign_upload(self, key: str, max_bytes: int, seconds: int, content_type: str) -> UploadForm:
        """`PUT {base_url}/v1/uploads/{token}`: the API streams at most `max_bytes` in, then stops."""
        token, expires_at = self._signed(Purpose.UPLOAD, upload_claims(check_key(key), max_bytes), seconds)
        url = f"{self.base_url}{UPLOAD_PATH}/{token}"
        return UploadForm(
            url=url, method="PUT", expires_at=expires_at, headers={"Content-Type": content_type}
        )

    def presign_download(self, key: str, seconds: int, *, download_as: str, media_type: str) -> str:
        token, _ = self._signed(
            Purpose.DOWNLOAD, download_claims(check_key(key), download_as, media_type), seconds
        )
        return f"{self.base_url}{DOWNLOAD_PATH}/{token}"

    def _signed(self, purpose: Purpose, claims: Claims, seconds: int) -> tuple[str, datetime]:
        if self.signer is None:
            raise RuntimeError("this LocalStorage was made without a signer: it cannot presign")
        return self.signer.sign(purpose, claims, seconds)

    def ping(self) -> None:
        # Written straight into the root, not through `writer`: that would recreate a vanished
        # root (an unmounted volume) instead of reporting it.
        probe = self.root / f".ping-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the root, so a refused upload leaves no trace."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop here
                return
            folder = folder.parent
