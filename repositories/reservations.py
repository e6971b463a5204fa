"""Active-job slots held by submissions whose audio is still on its way (see `Reservation`)."""

from datetime import datetime

from sqlalchemy import delete, select

from repositories.base import Repository
from repositories.models import Reservation


class ReservationRepository(Repository[Reservation]):
    model = Reservation

    def take(self, user_id: str, expires_at: datetime) -> Reservation:
        return self.create(user_id=user_id, expires_at=expires_at)

    def release(self, reservation_id: str) -> None:
        self.session.execute(delete(Reservation).where(Reservation.id == reservation_id))

    def count_live(self, user_id: str, now: datetime) -> int:
        return self.count(
            select(Reservation).where(Reservation.user_id == user_id, Reservation.expires_at > now)
        )

    def drop_expired(self, user_id: str, now: datetime) -> None:
        """Those a request that died left behind (they no longer count anyway)."""
        self.session.execute(
            delete(Reservation).where(Reservation.user_id == user_id, Reservation.expires_at <= now)
        )
