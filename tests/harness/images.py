"""Hand-built PNGs with correct chunk CRCs, for the image checks of the jobs tests.

They let a test claim any size in the header, or pad a file to an exact byte count,
without making a huge image.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


PNG_IEND = png_chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (the shape of a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + PNG_IEND
    )


def png_padded(png: bytes, total: int) -> bytes:
    """`png` (a valid PNG) padded to exactly `total` bytes by a private ancillary chunk."""
    assert png.endswith(PNG_IEND)
    padding = total - len(png) - 12  # a chunk adds 12 bytes around its body
    assert padding >= 0
    return png[: -len(PNG_IEND)] + png_chunk(b"prVt", b"\x00" * padding) + PNG_IEND
