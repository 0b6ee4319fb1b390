"""256 px JPEG thumbnails of a job's input photos, for the review console.

Made where intake already holds the photos (a Base64 image in the message); an image
given as a URL is not fetched again for this. The full inputs are never kept: only these
small copies, and `tryon forget` deletes them too.
"""

from __future__ import annotations

import io
import logging

from PIL import Image

from kolors_tryon.config import defaults
from kolors_tryon.jobs.images import decode_base64_image
from kolors_tryon.jobs.urls import scheme_of

__all__ = ["input_thumbnails", "thumbnail_jpeg"]

log = logging.getLogger(__name__)


def thumbnail_jpeg(data: bytes, size: int = defaults.CONSOLE_THUMBNAIL_PX) -> bytes:
    """`data` (an image validation accepted) scaled to fit `size` px, as a JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size
        image.thumbnail((size, size))
        rgb = image.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=80)
    return out.getvalue()


def input_thumbnails(human_image: str, cloth_image: str) -> dict[str, bytes]:
    """{"person": ..., "garment": ...} for the inputs given as Base64 (URLs are skipped).

    Never raises: a thumbnail is a convenience, and intake must not fail for it.
    """
    thumbnails: dict[str, bytes] = {}
    for kind, value in (("person", human_image), ("garment", cloth_image)):
        if scheme_of(value) is not None:
            continue
        try:
            thumbnails[kind] = thumbnail_jpeg(decode_base64_image(value))
        except Exception as exc:
            log.warning("no %s thumbnail: %s", kind, type(exc).__name__)
    return thumbnails
