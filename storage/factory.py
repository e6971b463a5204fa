from core.config import Settings
from storage.base import Storage
from storage.local import LocalStorage


def make_storage(settings: Settings) -> Storage:
    return LocalStorage(settings.storage_dir)
