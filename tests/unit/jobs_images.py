"""Image factories for the jobs tests: real files made with Pillow, and hand-built PNGs.

Hand-built PNGs (correct chunk CRCs) let a test claim any size in the header, or pad a
file to an exact byte count, without making a huge image.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (the shape of a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def png_of_size(total: int) -> bytes:
    """A valid 300x300 PNG padded to exactly `total` bytes by a private ancillary chunk."""
    base = png()
    iend = chunk(b"IEND", b"")
    assert base.endswith(iend)
    padding = total - len(base) - 12  # a chunk adds 12 bytes around its body
    assert padding >= 0
    return base[: -len(iend)] + chunk(b"prVt", b"\x00" * padding) + iend
