"""Direct uploads granted and not yet submitted."""

from datetime import datetime

from sqlalchemy import delete, select

from repositories.base import Repository
from repositories.models import Upload, User


class UploadRepository(Repository[Upload]):
    model = Upload

    def count_pending(self, user_id: str) -> int:
        """The user's uploads granted and neither submitted nor swept, counted under a lock on the
        user's row until the transaction ends: one user's concurrent grants take turns here, so
        together they cannot pass a limit that each checks alone."""
        self.session.execute(select(User.id).where(User.id == user_id).with_for_update())
        return self.count(select(Upload).where(Upload.user_id == user_id))

    def claim(self, key: str, user_id: str) -> Upload | None:
        """Take the caller's upload at `key` for a job: the row goes with the transaction."""
        upload = self.get_one_or_none(select(Upload).where(Upload.key == key, Upload.user_id == user_id))
        if upload is not None:
            self.session.delete(upload)
            self.session.flush()
        return upload

    def take_expired(self, before: datetime, limit: int = 1000) -> list[str]:
        """Delete (up to `limit` of) the uploads whose URL expired before `before`; returns their keys."""
        keys = list(self.session.scalars(select(Upload.key).where(Upload.expires_at < before).limit(limit)))
        if keys:
            self.session.execute(delete(Upload).where(Upload.key.in_(keys)))
        return keys
