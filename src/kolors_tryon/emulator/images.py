"""Image work for the emulator: checking inputs, spotting blank photos, drawing PNGs.

Inputs are checked the way KLING_API.md states the rules (JPEG or PNG, at most 10 MB,
both sides at least 300 px) by reading only the header with Pillow: decoding every pixel
of every upload would make the emulator the bottleneck of the benchmarks it serves.

The one rule the docs do not state, and the emulator invents so that tests can make a
job fail on purpose, is that a human image of a single flat colour has "no human" in it.
That check does decode pixels (scaled down for JPEG), but only for the human image, and
the verdict is cached by content hash because benchmarks send the same photo thousands
of times.

Result and sample images are drawn once with Pillow and cached as PNG bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageDraw

#: Largest accepted image, in bytes (the docs' "10 MB", read as MiB to be liberal).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Smallest accepted width and height.
MIN_SIDE = 300
#: Images with more pixels than this skip the blank check (it would decode too much).
FLAT_CHECK_MAX_PIXELS = 40_000_000
#: Largest per-channel spread (0..255) still called "one flat colour" (JPEG noise).
FLAT_TOLERANCE = 3

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CACHE_SIZE = 512


class ImageRuleError(ValueError):
    """The bytes break one of the image rules; the message states the rule."""


@dataclass(frozen=True)
class ImageFacts:
    """What the emulator learnt about one input image.

    Attributes:
        format: ``"jpeg"`` or ``"png"``.
        width: Width in pixels.
        height: Height in pixels.
        digest: SHA-256 of the bytes, the key of the blank-check cache.
    """

    format: str
    width: int
    height: int
    digest: bytes


class _BoundedCache:
    """A small thread-safe LRU keyed by content digest (never by the bytes themselves)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> object | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: bytes, value: object) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_facts_cache = _BoundedCache(_CACHE_SIZE)
_flat_cache = _BoundedCache(_CACHE_SIZE)


def inspect_image(data: bytes) -> ImageFacts:
    """Check ``data`` against the image rules and return its facts.

    Raises:
        ImageRuleError: The image is too large, not JPEG/PNG, unreadable or too small.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRuleError("image must be at most 10 MB")
    if data.startswith(_JPEG_MAGIC):
        expected = "JPEG"
    elif data.startswith(_PNG_MAGIC):
        expected = "PNG"
    else:
        raise ImageRuleError("image format must be jpg, jpeg or png")
    digest = hashlib.sha256(data).digest()
    cached = _facts_cache.get(digest)
    if isinstance(cached, ImageFacts):
        return cached
    try:
        # Image.open parses the header only; no pixel is decoded here.
        with Image.open(io.BytesIO(data), formats=[expected]) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise ImageRuleError("image data is corrupt or not a readable jpg/png") from None
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageRuleError(
            f"image width and height must be at least {MIN_SIDE}px (got {width}x{height})"
        )
    facts = ImageFacts(format=expected.lower(), width=width, height=height, digest=digest)
    _facts_cache.put(digest, facts)
    return facts


def is_flat_colour(data: bytes, facts: ImageFacts) -> bool:
    """Return True when the image is one flat colour (the emulator's "no human" rule).

    Images too large to decode cheaply are assumed not to be flat.
    """
    cached = _flat_cache.get(facts.digest)
    if isinstance(cached, bool):
        return cached
    flat = False
    if facts.width * facts.height <= FLAT_CHECK_MAX_PIXELS:
        try:
            with Image.open(io.BytesIO(data)) as img:
                # JPEG can decode at 1/8 scale: a blank photo stays blank, and it is fast.
                img.draft("RGB", (128, 128))
                extrema = img.convert("RGB").getextrema()
            # RGB gives one (low, high) pair per band.
            bands = [band for band in extrema if isinstance(band, tuple)]
            flat = bool(bands) and all(high - low <= FLAT_TOLERANCE for low, high in bands)
        except (OSError, ValueError, SyntaxError):
            flat = False  # truncated pixel data: leave the verdict to the header checks
    _flat_cache.put(facts.digest, flat)
    return flat


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _draw_person(draw: ImageDraw.ImageDraw, width: int, height: int, shirt: str) -> None:
    """Draw a simple standing figure, so the "human" is anything but a flat colour."""
    cx = width // 2
    skin, trousers, hair = "#e0b08c", "#2f3e5c", "#3b2a20"
    head_r = width // 10
    head_top = height // 12
    draw.ellipse((cx - head_r, head_top, cx + head_r, head_top + 2 * head_r), fill=skin)
    draw.chord(
        (cx - head_r, head_top - 4, cx + head_r, head_top + 2 * head_r // 1.4),
        180,
        360,
        fill=hair,
    )
    neck_top = head_top + 2 * head_r
    draw.rectangle((cx - head_r // 3, neck_top - 4, cx + head_r // 3, neck_top + 16), fill=skin)
    torso_top, torso_bottom = neck_top + 12, int(height * 0.58)
    shoulder = int(width * 0.2)
    draw.polygon(
        [
            (cx - shoulder, torso_top),
            (cx + shoulder, torso_top),
            (cx + shoulder - 12, torso_bottom),
            (cx - shoulder + 12, torso_bottom),
        ],
        fill=shirt,
    )
    arm = int(width * 0.07)
    for side in (-1, 1):
        x_out = cx + side * (shoulder + arm)
        x_in = cx + side * shoulder
        draw.polygon(
            [
                (x_in, torso_top),
                (x_out, torso_top + 20),
                (x_out, torso_bottom - 20),
                (x_in, torso_bottom - 40),
            ],
            fill=shirt,
        )
        draw.ellipse(
            (min(x_in, x_out), torso_bottom - 30, max(x_in, x_out), torso_bottom + 5), fill=skin
        )
        leg_in, leg_out = cx + side * 8, cx + side * (shoulder - 14)
        draw.rectangle(
            (min(leg_in, leg_out), torso_bottom, max(leg_in, leg_out), int(height * 0.93)),
            fill=trousers,
        )
        draw.rectangle(
            (
                min(leg_in, leg_out) - 4,
                int(height * 0.93),
                max(leg_in, leg_out) + 4,
                int(height * 0.96),
            ),
            fill="#222222",
        )


@functools.cache
def sample_png(name: str) -> bytes | None:
    """Return a sample input image by name, or None when there is no such sample.

    ``human`` is a drawn figure, ``cloth`` a T-shirt on white, ``blank`` a flat grey
    picture that passes every image rule but makes the task fail ("no human").
    """
    if name == "human":
        img = Image.new("RGB", (512, 768), "white")
        _draw_person(ImageDraw.Draw(img), 512, 768, shirt="#9aa5b1")
        return _png_bytes(img)
    if name == "cloth":
        img = Image.new("RGB", (512, 512), "white")
        draw = ImageDraw.Draw(img)
        draw.polygon(
            [
                (176, 80),
                (210, 80),
                (256, 120),
                (302, 80),
                (336, 80),
                (440, 150),
                (400, 220),
                (360, 195),
                (360, 440),
                (152, 440),
                (152, 195),
                (112, 220),
                (72, 150),
            ],
            fill="#c0392b",
            outline="#7b241c",
        )
        draw.line([(256, 120), (256, 440)], fill="#a93226", width=2)
        return _png_bytes(img)
    if name == "blank":
        return _png_bytes(Image.new("RGB", (512, 768), (200, 200, 200)))
    return None


@functools.cache
def _result_base_png() -> bytes:
    img = Image.new("RGB", (512, 768), "#f4f4f4")
    _draw_person(ImageDraw.Draw(img), 512, 768, shirt="#c0392b")
    return _png_bytes(img)


def result_png(task_id: str) -> bytes:
    """Return the try-on "result" of a task: the cached picture tagged with the task id.

    The id goes into a PNG ``tEXt`` chunk, so each task's file has distinct bytes (a
    client that stores copies can tell them apart) at the cost of a splice, not a redraw.
    """
    base = _result_base_png()
    payload = b"kolors-task-id\x00" + task_id.encode("ascii", "replace")
    chunk = (
        struct.pack(">I", len(payload))
        + b"tEXt"
        + payload
        + struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    )
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return base[:ihdr_end] + chunk + base[ihdr_end:]
