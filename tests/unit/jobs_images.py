"""Image factories for the jobs tests: real files made with Pillow (hand-built PNGs that
claim any size or weigh an exact byte count are in `harness.images`).
"""

from __future__ import annotations

import base64
import io

from PIL import Image

from harness import png_padded


def image_bytes(fmt: str, width: int = 300, height: int = 300, **save_args: object) -> bytes:
    """Encode a small noisy RGB image of the given size in format `fmt` (Pillow's name)."""
    img = Image.effect_noise((width, height), 40).convert("RGB")
    out = io.BytesIO()
    img.save(out, fmt, **save_args)
    return out.getvalue()


def png(width: int = 300, height: int = 300) -> bytes:
    """A valid PNG."""
    return image_bytes("PNG", width, height)


def jpeg(width: int = 300, height: int = 300) -> bytes:
    """A valid baseline JPEG."""
    return image_bytes("JPEG", width, height)


def b64(data: bytes) -> str:
    """Bare Base64, as Kling wants it."""
    return base64.b64encode(data).decode("ascii")


def png_of_size(total: int) -> bytes:
    """A valid 300x300 PNG padded to exactly `total` bytes."""
    return png_padded(png(), total)
