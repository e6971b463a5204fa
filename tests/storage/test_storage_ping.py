"""`Storage.ping`, the readiness probe of the storage contract, on the local backend."""

import shutil

import pytest

from storage.local import LocalStorage


def test_ping_leaves_nothing_behind(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    storage.ping()
    assert list((tmp_path / "objects").iterdir()) == []


def test_ping_fails_when_the_root_is_gone_or_not_a_folder(tmp_path):
    root = tmp_path / "objects"
    storage = LocalStorage(root)
    shutil.rmtree(root)  # an unmounted volume: report it, do not recreate the folder
    with pytest.raises(OSError):
        storage.ping()
    assert not root.exists()
    root.write_bytes(b"")
    with pytest.raises(OSError):
        storage.ping()
