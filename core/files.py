"""Files only this service's user may read: transcripts, audio, the SQLite database, secrets.

Folders are made 0700 and files 0600 (a umask can only take bits away), so another account on the machine can
neither list nor read them. `Path.mkdir(parents=True)` gives the parents it makes the default
mode, hence the walk below.
"""

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """`path` and every missing folder above it, made 0700; folders that exist are left as they are."""
    try:
        path.mkdir(mode=PRIVATE_DIR)
    except FileNotFoundError:
        if path.parent == path:
            raise
        private_dir(path.parent)
        path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    except OSError:
        if not path.is_dir():
            raise
    return path


def create_private_file(path: Path) -> int:
    """A new, empty file opened for writing, 0600 from its first instant (a file descriptor)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
