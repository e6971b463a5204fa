"""Alembic environment. The URL comes from the caller (`sqlalchemy.url`) or from the settings."""

from typing import Any

from alembic import context

from core.config import get_settings
from core.db import make_engine
from repositories.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def _for_this_database(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Compare an object made for one database only (`info={"dialect": …}`) on that database only."""
    dialect = getattr(obj, "info", {}).get("dialect")
    return dialect is None or dialect == context.get_context().dialect.name


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=_for_this_database,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        # Batch mode lets later migrations alter columns on SQLite too.
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=_for_this_database,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
