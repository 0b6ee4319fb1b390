"""Inspect one image the way Kling will judge it: JPEG or PNG, at most 10 MB, sides >= 300 px.

Images arrive as Base64 (bare, or with a ``data:`` prefix that Kling refuses and we strip)
or as bytes fetched by the URL preflight. Everything is decided from the bytes, never from
a file name or a declared media type, and the checks stay cheap and bounded:

* Base64 is decoded strictly (`base64.b64decode(validate=True)`). Before that, ASCII
  whitespace (space, tab, CR, LF) is removed on purpose, because the output of
  ``base64`` on the command line and MIME encoders wrap lines; any other character
  outside the standard alphabet is refused, URL-safe Base64 included.
* The decoded size is known from the Base64 length, so a huge payload is refused before
  it is decoded.
* Width and height are read from the header by us (PNG's IHDR, JPEG's frame header)
  and held to `MAX_SIDE` and `MAX_PIXELS` before any pixel is inflated or decoded: a
  630 KB PNG can claim 9000x9000 16-bit pixels, 648 MB to inflate. Pillow then reads
  the header again (`PIL.Image.open` is lazy) with its own decompression-bomb guard on,
  its warning treated as an error; our limits apply even if someone disabled Pillow's.
* Completeness: a PNG must reach its IEND chunk with every chunk's CRC correct
  (`Image.verify`) and its compressed pixels must inflate to exactly the size its header
  implies (counted, not kept); a JPEG must end with the EOI marker (trailing padding
  allowed), and libjpeg must take its frame, tables and scan header and decode the start
  of the scan (at 1/8 scale). libjpeg decodes a cut or damaged scan leniently (a warning,
  not an error), so the end marker is what finds a cut file, and decoding the rest of
  the scan would find nothing more.

Every failure is an `ImageProblem` whose message says what was found and what is
accepted, and never quotes the data.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from PIL import Image

from kolors_tryon.config import defaults
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.urls import scheme_of

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "ImageInfo",
    "ImageProblem",
    "decode_base64_image",
    "format_size",
    "inspect_image",
    "inspect_image_bytes",
    "normalize_base64",
    "strip_data_prefix",
]

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
"""Kling's limit per image: 10 MB, read as 10 MiB (the API does not say which; the
smaller reading would refuse files the API takes, so we use the larger)."""
MIN_SIDE: Final = 300
"""Kling refuses images narrower or lower than this, in pixels."""
MAX_PIXELS: Final = defaults.MAX_IMAGE_PIXELS
"""The most pixels an image may have (config/defaults.py says why), read from its header."""
MAX_SIDE: Final = defaults.MAX_IMAGE_SIDE
"""The longest width or height accepted, in pixels, read from the header."""
ACCEPTED_FORMATS: Final = ("JPEG", "PNG")

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_IEND: Final = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"  # empty IEND chunk with its CRC
_JPEG_SOI: Final = b"\xff\xd8\xff"
_JPEG_EOI: Final = b"\xff\xd9"
# Bytes of a JPEG's first scan that libjpeg decodes to see that it can (see
# `_check_jpeg_complete`): enough for the first rows of blocks of any image.
_JPEG_SCAN_PROBE: Final = 64 * 1024
# Bytes some encoders and uploaders leave after a JPEG's EOI marker.
_JPEG_PADDING: Final = b"\x00\xff \t\r\n"
_B64_WHITESPACE = re.compile(r"[ \t\r\n]+")
_B64_OUTSIDE_ALPHABET = re.compile(r"[^A-Za-z0-9+/=]")
_DATA_URI = re.compile(r"^data:([^,]*),", re.IGNORECASE)

# Magic numbers of formats people send by mistake, so the refusal can name what was found
# without handing unknown data to every Pillow decoder.
_KNOWN_MAGIC: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"%PDF", "PDF"),
    (0, b"8BPS", "PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (0, b"<svg", "SVG"),
    (0, b"<?xml", "XML/SVG"),
)


class ImageProblem(CheckFailed):
    """An image breaks one of Kling's image rules, or its data cannot be read."""


@dataclass(frozen=True)
class ImageInfo:
    """What the checks learnt about an accepted image.

    Attributes:
        format: ``"JPEG"`` or ``"PNG"``, decided by the bytes.
        width: Width in pixels, from the header.
        height: Height in pixels, from the header.
        size_bytes: Size of the decoded file in bytes.
    """

    format: str
    width: int
    height: int
    size_bytes: int


def format_size(size: int) -> str:
    """Return a size in MB (MiB) as producers think of it, e.g. ``"10 MB"`` or ``"12.3 MB"``."""
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


def _too_big(size: int, max_bytes: int, *, approx: str = "") -> ImageProblem:
    shown = format_size(size)
    if shown == format_size(max_bytes):  # 10485761 bytes would print as "10 MB" too
        shown = f"over {shown}"
    return ImageProblem(
        "max_bytes",
        f"image is {approx}{shown} ({size} bytes); images must be at most "
        f"{format_size(max_bytes)} ({max_bytes} bytes)",
    )


def strip_data_prefix(text: str) -> str:
    """Return the Base64 payload of a ``data:...;base64,`` URI, or `text` unchanged.

    Kling wants the bare Base64 string, but browsers and many tools produce data URIs, so
    we accept the prefix and strip it. The declared media type is ignored: the bytes
    decide the format.

    Args:
        text: A field value, stripped of surrounding whitespace.

    Returns:
        The part after the comma for a data URI; `text` itself otherwise.

    Raises:
        ImageProblem: rule ``"format"`` for a data URI that is not Base64-encoded.
    """
    if scheme_of(text) != "data":
        return text
    match = _DATA_URI.match(text)
    if match is None:
        raise ImageProblem(
            "format", "data: URI has no ',' before its data; use data:image/png;base64,<data>"
        )
    params = [p.strip().lower() for p in match.group(1).split(";")]
    if "base64" not in params[1:]:
        raise ImageProblem(
            "format",
            "data: URI is not Base64-encoded; use data:image/png;base64,<data> or bare Base64",
        )
    return text[match.end() :]


def normalize_base64(text: str) -> str:
    """Return the bare Base64 Kling wants: data: prefix stripped, whitespace removed.

    Args:
        text: Base64 image data as a producer sent it.

    Returns:
        The same data, without a ``data:`` prefix and without ASCII whitespace (line breaks
        of wrapped Base64 are common and carry no data).

    Raises:
        ImageProblem: rule ``"format"`` for a data URI that is not Base64-encoded.
    """
    payload = strip_data_prefix(text.strip())
    # Most Base64 has no whitespace: four memchr scans then return the string itself,
    # where a regex pass would copy megabytes (bench/validation.py: 36 ms per 10 MB).
    if not any(space in payload for space in " \t\r\n"):
        return payload
    return _B64_WHITESPACE.sub("", payload)


def _looks_like_a_path(text: str) -> bool:
    """A short string with a dot or slash, like `photos/anna.jpg` or `//cdn/x.png`."""
    return len(text) <= 1024 and ("." in text or text.startswith("//"))


def _describe_char(char: str) -> str:
    if char.isascii() and char.isprintable():
        return f"'{char}'"
    return f"U+{ord(char):04X}"


def decode_base64_image(text: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Decode Base64 image data strictly, refusing it early when it is too big.

    Args:
        text: Bare or data:-prefixed Base64, possibly line-wrapped.
        max_bytes: The largest decoded size accepted.

    Returns:
        The decoded bytes.

    Raises:
        ImageProblem: rule ``"base64"`` for malformed Base64, ``"max_bytes"`` when the
            decoded data would exceed `max_bytes`, ``"format"`` for a bad data: URI.
    """
    # Validation hands over bare Base64 (the job model normalized it): decoded at once,
    # without scanning the text for whitespace a second time (4 scans, 3.5 ms a 10 MB).
    fast = _decode_well_formed(text, max_bytes)
    if fast is not None:
        return fast
    payload = normalize_base64(text)
    fast = _decode_well_formed(payload, max_bytes)
    if fast is not None:
        return fast
    # Something is wrong: find out what, to say it in words the producer can act on.
    accepted = "standard Base64 (A-Z a-z 0-9 + / with '=' padding)"
    if not payload:
        raise ImageProblem("base64", f"Base64 image data is empty; give {accepted}")
    bad = _B64_OUTSIDE_ALPHABET.search(payload)
    if bad is not None and _looks_like_a_path(payload):
        raise ImageProblem(
            "base64",
            "looks like a file path or a relative URL, which the API cannot read; give an "
            "absolute http(s) URL (https://host/photo.jpg) or the Base64 of the file",
        )
    if bad is not None:
        hint = "; URL-safe Base64 ('-', '_') is not accepted" if bad.group() in "-_" else ""
        raise ImageProblem(
            "base64",
            f"is not valid Base64: character {_describe_char(bad.group())} is outside the "
            f"alphabet; give {accepted}{hint}",
        )
    first_pad = payload.find("=")
    if first_pad != -1 and payload[first_pad:] not in ("=", "=="):
        raise ImageProblem(
            "base64", f"is not valid Base64: '=' padding may only end the data; give {accepted}"
        )
    if len(payload) % 4:
        raise ImageProblem(
            "base64",
            f"is not valid Base64: its length ({len(payload)} characters without whitespace) "
            f"is not a multiple of 4, so padding is missing or data was cut; give {accepted}",
        )
    decoded_size = len(payload) // 4 * 3 - (len(payload) - first_pad if first_pad != -1 else 0)
    if decoded_size > max_bytes:
        raise _too_big(decoded_size, max_bytes)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageProblem("base64", f"is not valid Base64; give {accepted}") from None


def _decode_well_formed(payload: str, max_bytes: int) -> bytes | None:
    """Decode Base64 that is well formed and not too big in one strict pass; else None.

    The common case costs one pass and one copy (the decoded bytes): `a2b_base64` reads
    an ASCII `str` in place, where `b64decode` first copies it to bytes, and the
    diagnostics of `decode_base64_image` (a scan for characters outside the alphabet)
    run only when this fails. Strict mode refuses exactly what they would refuse.
    """
    first_pad = payload.find("=")
    if len(payload) % 4 or (first_pad != -1 and payload[first_pad:] not in ("=", "==")):
        return None
    padding = len(payload) - first_pad if first_pad != -1 else 0
    if not payload or len(payload) // 4 * 3 - padding > max_bytes:
        return None
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _sniff(data: bytes) -> str | None:
    if data.startswith(_JPEG_SOI):
        return "JPEG"
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    return None


@contextmanager
def _bomb_guard() -> Iterator[None]:
    """Make Pillow's DecompressionBombWarning an error while we look at untrusted data.

    `warnings.catch_warnings` changes process-wide state, so another thread may briefly
    see this filter too; that only makes its bomb warnings errors as well. Our own
    `MAX_PIXELS` check is the guard we rely on; this catches a bomb in the header read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


_LIMITS: Final = (
    f"images may have at most {MAX_SIDE} px a side and {MAX_PIXELS} pixels "
    f"({MAX_PIXELS // 1_000_000} MP) in all; the API needs no more than a few thousand px a "
    "side, so scale the photo down"
)


def _bomb_problem() -> ImageProblem:
    return ImageProblem(
        "max_pixels",
        f"image header claims more pixels than Pillow decodes safely; refused before decoding "
        f"as a possible decompression bomb; {_LIMITS}",
    )


def _check_pixel_limits(width: int, height: int) -> None:
    """Refuse an image too large in pixels, from its header alone, before anything inflates.

    Raises:
        ImageProblem: rule ``"max_pixels"``, naming the size found and both limits.
    """
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageProblem(
            "max_pixels",
            f"image is {width}x{height} px ({width * height} pixels); {_LIMITS} (refused "
            "from its header, before decoding, as a guard against decompression bombs)",
        )


# JPEG start-of-frame markers (C0-CF) but DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) as the file's header states them, read without Pillow; None when
    the header is not where the format puts it (Pillow's read then names the problem).

    A PNG's first chunk is IHDR (13 bytes and a CRC), width and height its first 8; a JPEG's frame
    header (SOFn) follows its tables: height, then width, after the sample precision.
    """
    if fmt == "PNG":
        # A damaged header is for Pillow to call corrupt, not for us to believe.
        ihdr = data[8:33]
        if len(ihdr) < 25 or ihdr[:8] != b"\x00\x00\x00\x0dIHDR":
            return None
        if zlib.crc32(ihdr[4:21]) != int.from_bytes(ihdr[21:25], "big"):
            return None
        width, height = struct.unpack(">II", ihdr[8:16])
        return int(width), int(height)
    for marker, at, _end in _jpeg_segments(data):
        if marker == 0xDA:  # a scan before any frame header: not a JPEG we can read
            return None
        if marker in _JPEG_SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment from SOI on; stops where the bytes
    stop being a marker (the caller then finds what it looked for missing)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            at += 2
            continue
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        yield marker, at, end
        at = end


def _name_refused_format(data: bytes) -> str | None:
    for offset, magic, name in _KNOWN_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    try:
        with _bomb_guard(), Image.open(io.BytesIO(data)) as img:
            return str(img.format or "") or None
    except Exception:  # any decoder may fail its own way on unknown data; just unnamed
        return None


def _refuse_format(data: bytes) -> ImageProblem:
    name = _name_refused_format(data)
    if name is None:
        return ImageProblem(
            "format", "data is not a recognizable image; only JPEG and PNG are accepted"
        )
    return ImageProblem("format", f"image is {name}; only JPEG and PNG are accepted")


def _read_size(data: bytes, fmt: str) -> tuple[int, int]:
    try:
        with _bomb_guard(), Image.open(io.BytesIO(data), formats=[fmt]) as img:
            width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb_problem() from None
    except Exception:  # Pillow's parsers raise many types on bad headers
        raise ImageProblem(
            "corrupt",
            f"data starts like a {fmt} but its header cannot be read (truncated or corrupt); "
            "send a complete JPEG or PNG file",
        ) from None
    return int(width), int(height)


def _incomplete(fmt: str, detail: str) -> ImageProblem:
    return ImageProblem("truncated", f"{fmt} data is truncated ({detail}); send the complete file")


def _corrupt(fmt: str) -> ImageProblem:
    return ImageProblem(
        "corrupt", f"{fmt} data is corrupt and cannot be decoded; send a valid JPEG or PNG file"
    )


# Adam7 interlacing: (first column, first row, column step, row step) of each pass.
_ADAM7: Final = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_PNG_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_INFLATE_STEP: Final = 1 << 20


def _png_filtered_size(width: int, height: int, bits_per_pixel: int, interlace: int) -> int:
    """Bytes the IDAT stream must inflate to: each row is a filter byte plus its pixels."""

    def size(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits_per_pixel + 7) // 8)

    if interlace == 0:
        return size(width, height)
    return sum(
        size(max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
        for x0, y0, dx, dy in _ADAM7
    )


def _png_image_data_status(data: bytes) -> str | None:
    """Inflate the IDAT stream, counting (not keeping) its bytes against what IHDR implies.

    `Image.verify` checks chunk CRCs but not that the compressed pixels are complete, so
    a PNG whose image data was cut (and whose IEND was re-appended by some tool) would
    pass it. Counting keeps memory constant whatever the image size.

    Returns:
        None if the data is complete, ``"truncated"`` or ``"corrupt"`` otherwise.
    """
    pos = len(_PNG_SIGNATURE)
    expected: int | None = None
    inflater = zlib.decompressobj()
    produced = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR" and len(body) >= 13:
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
            channels = _PNG_CHANNELS.get(colour)
            if channels is None:
                return "corrupt"
            expected = _png_filtered_size(width, height, depth * channels, interlace)
        elif kind == b"IDAT":
            if expected is None:
                return "corrupt"
            pending = body
            while pending and not inflater.eof:
                produced += len(inflater.decompress(pending, _INFLATE_STEP))
                if produced > expected:
                    return "corrupt"
                pending = inflater.unconsumed_tail
        elif kind == b"IEND":
            break
    # Output held back by the step limit once all input was consumed.
    while expected is not None and not inflater.eof:
        out = inflater.decompress(b"", _INFLATE_STEP)
        if not out:
            break
        produced += len(out)
        if produced > expected:
            return "corrupt"
    if expected is None:
        return "corrupt"
    return None if inflater.eof and produced == expected else "truncated"


def _check_png_complete(data: bytes) -> None:
    if data.rfind(_PNG_IEND) == -1:
        raise _incomplete("PNG", "no IEND chunk at the end")
    try:
        with _bomb_guard(), Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            img.verify()  # walks every chunk to IEND, checking lengths and CRCs
        status = _png_image_data_status(data)
    except Exception as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
            raise _incomplete("PNG", "a chunk ends early") from None
        raise _corrupt("PNG") from None
    if status == "truncated":
        raise _incomplete("PNG", "the compressed image data ends early")
    if status is not None:
        raise _corrupt("PNG")


def _check_jpeg_complete(data: bytes) -> None:
    """A JPEG is complete when it ends with its end marker, and sound when libjpeg takes
    its frame, tables and scan header and starts decoding.

    Decoding the whole scan proves nothing more: libjpeg decodes a cut or damaged scan
    as a warning, not an error (a photo cut anywhere in its scan with FFD9 glued on, bytes
    flipped or zeroed in it: Pillow loads every one of them; tests/unit/test_jobs_images.py),
    and it cost 60 ms of a 10 MB JPEG's 101 (bench/README.md, section 4). So libjpeg
    decodes the headers and the first `_JPEG_SCAN_PROBE` bytes of the scan, at 1/8 scale.
    """
    if not data.rstrip(_JPEG_PADDING).endswith(_JPEG_EOI):
        raise _incomplete("JPEG", "no end-of-image marker FFD9")
    scan = _first_scan_at(data)
    probe = data if scan is None else data[: scan + _JPEG_SCAN_PROBE] + _JPEG_EOI
    try:
        with _bomb_guard(), Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            img.verify()
        with _bomb_guard(), Image.open(io.BytesIO(probe), formats=["JPEG"]) as img:
            img.draft(None, (1, 1))  # 1/8 scale: memory stays small
            img.load()
    except Exception as exc:
        if "truncated" in str(exc).lower():
            raise _incomplete("JPEG", "the image data ends early") from None
        raise _corrupt("JPEG") from None


def _first_scan_at(data: bytes) -> int | None:
    """Where the first scan's entropy-coded data starts (after its SOS segment), found by
    walking the marker segments from SOI; None if they do not lead to one."""
    for marker, _at, end in _jpeg_segments(data):
        if marker == 0xDA:  # start of scan
            return end if end <= len(data) else None
    return None


def inspect_image_bytes(data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES) -> ImageInfo:
    """Check decoded image bytes against Kling's rules.

    Args:
        data: The image file's bytes.
        max_bytes: The largest size accepted (Kling: 10 MB).

    Returns:
        The image's format, dimensions and size.

    Raises:
        ImageProblem: rules ``"max_bytes"``, ``"format"``, ``"max_pixels"``, ``"corrupt"``,
            ``"min_size"`` or ``"truncated"``, checked in that
            order so that the cheapest conclusive check answers first.
    """
    size = len(data)
    if size == 0:
        raise ImageProblem("format", "image data is empty; give a JPEG or PNG file")
    if size > max_bytes:
        raise _too_big(size, max_bytes)
    fmt = _sniff(data)
    if fmt is None:
        raise _refuse_format(data)
    claimed = _header_size(data, fmt)
    if claimed is not None:
        _check_pixel_limits(*claimed)
    width, height = _read_size(data, fmt)
    _check_pixel_limits(width, height)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageProblem(
            "min_size",
            f"image is {width}x{height} px; width and height must be at least {MIN_SIDE} px",
        )
    if fmt == "PNG":
        _check_png_complete(data)
    else:
        _check_jpeg_complete(data)
    return ImageInfo(format=fmt, width=width, height=height, size_bytes=size)


def inspect_image(data: bytes | str, *, max_bytes: int = MAX_IMAGE_BYTES) -> ImageInfo:
    """Check one image given as bytes or as Base64 text (bare or with a data: prefix).

    Args:
        data: The image file's bytes, or its Base64 encoding.
        max_bytes: The largest decoded size accepted.

    Returns:
        The image's format, dimensions and decoded size.

    Raises:
        ImageProblem: see `decode_base64_image` and `inspect_image_bytes`.
    """
    raw = decode_base64_image(data, max_bytes=max_bytes) if isinstance(data, str) else data
    return inspect_image_bytes(raw, max_bytes=max_bytes)
