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


def png_inflating(width: int, height: int) -> bytes:
    """A real PNG of `width` x `height` 16-bit RGBA pixels, all zero: it inflates to
    height x (1 + width x 8) bytes (648 MB at 9000x9000) from about a thousandth of that.

    Deflating hundreds of MB takes seconds, so one block of rows is deflated once and
    repeated: after a full flush the compressor starts afresh, so every following block
    of the same rows deflates to the same bytes; the stream then ends with an empty final
    block and the Adler-32 of all the rows.
    """
    row = b"\x00" * (1 + width * 8)
    rows = max(n for n in range(1, 101) if height % n == 0)
    block = row * rows
    deflater = zlib.compressobj(9)
    first = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    again = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    blocks = height // rows
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    stream = first + again * (blocks - 1) + b"\x03\x00" + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream) + PNG_IEND
