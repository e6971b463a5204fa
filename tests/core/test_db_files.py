"""The SQLite database of `./scripts/run` holds every account and transcript: its folder is 0700 and
its files (the database, its WAL and shared-memory files) 0600, however it comes into being."""

import os
import stat
from pathlib import Path

from sqlalchemy import text

from core.db import make_engine
from tests.conftest import alembic_upgrade


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_files_are_0600(tmp_path: Path) -> None:
    previous = os.umask(0o002)
    try:
        database = tmp_path / "verbatim.db"
        engine = make_engine(f"sqlite:///{database}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            files = [database, database.with_name("verbatim.db-wal"), database.with_name("verbatim.db-shm")]
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        engine.dispose()
    finally:
        os.umask(previous)


def test_the_migrations_create_the_database_0600_in_a_new_0700_folder(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "data" / "verbatim.db"
    alembic_upgrade(f"sqlite:///{database}")  # what `./scripts/run` does first
    assert mode(database) == 0o600
    assert mode(database.parent) == mode(database.parent.parent) == 0o700
