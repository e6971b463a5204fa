from core.config import Settings
from core.signing import UrlSigner
from storage.base import Storage
from storage.local import LocalStorage


def make_storage(settings: Settings) -> Storage:
    """The configured backend, ready to use; called once at process start (API or worker)."""
    if settings.storage_backend == "s3":
        from storage.s3 import S3Storage  # boto3 loads only when S3 is used

        s3 = S3Storage.from_settings(settings)
        s3.ensure_bucket()
        return s3
    # The secret behind the signer loads on the first presigned URL, so a worker never needs it.
    return LocalStorage(settings.storage_dir, UrlSigner(settings), settings.base_url)
