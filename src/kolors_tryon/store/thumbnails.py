"""The console's input thumbnails in the store (`tryon_thumbnails`, migration 0007)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from kolors_tryon.store.tables import ThumbnailRow

__all__ = ["save_thumbnails"]


def save_thumbnails(engine: Engine, job_id: str, thumbnails: Mapping[str, bytes]) -> None:
    """Keep `thumbnails` ({kind: JPEG}) of a recorded job, replacing any it had."""
    if not thumbnails:
        return
    with Session(engine) as s, s.begin():
        s.execute(
            delete(ThumbnailRow).where(
                ThumbnailRow.job_id == job_id, ThumbnailRow.kind.in_(list(thumbnails))
            )
        )
        s.add_all(
            ThumbnailRow(job_id=job_id, kind=kind, data=data) for kind, data in thumbnails.items()
        )
