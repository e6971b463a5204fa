"""A small generic repository. Repositories only flush: the request or the worker task commits."""

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from repositories.models import Base

M = TypeVar("M", bound=Base)


def seconds_between(
    session: Session, later: InstrumentedAttribute[Any], earlier: InstrumentedAttribute[Any]
) -> ColumnElement[Any]:
    """`later - earlier` in seconds, in SQL. Date arithmetic is where the two databases differ."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


class Repository(Generic[M]):
    model: type[M]

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, id: str) -> M | None:
        return self.session.get(self.model, id)

    def get_one_or_none(self, stmt: Select[M]) -> M | None:
        return self.session.execute(stmt).scalar_one_or_none()

    def create(self, **values: Any) -> M:
        obj = self.model(**values)
        self.session.add(obj)
        self.session.flush()
        return obj

    def update(self, obj: M, **values: Any) -> M:
        for name, value in values.items():
            setattr(obj, name, value)
        self.session.flush()
        return obj

    def delete(self, obj: M) -> None:
        self.session.delete(obj)
        self.session.flush()

    def count(self, stmt: Select[Any] | None = None) -> int:
        base = stmt if stmt is not None else select(self.model)
        total = self.session.execute(select(func.count()).select_from(base.order_by(None).subquery()))
        return int(total.scalar_one())

    def paginate(self, stmt: Select[M], limit: int, offset: int) -> tuple[Sequence[M], int]:
        items = self.session.execute(stmt.limit(limit).offset(offset)).scalars().all()
        return items, self.count(stmt)
