"""Validation: what checking a job's images costs the worker, against Pillow's own check.

Every Base64 job is decoded and checked by the worker before it may cost a credit
(`validate_job`: Base64, format, size, dimensions, and that the file is complete). The
images here are noise, so that they do not compress: a 10 MB JPEG and a 10 MB PNG just
under Kling's limit, and "typical" 1 MB photos.

Baseline: Pillow's `Image.open(...).verify()` of the same bytes (after the same Base64
decode), the least any check that opens the file does. Peak memory is Python's
(tracemalloc): Pillow's pixel buffers are allocated outside it, so it measures the
copies our code makes of the payload, which is what grows with a bigger image.
"""

from __future__ import annotations

import base64
import io
import json
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import ms, write_result
from harness import SAMPLES
from kolors_tryon.jobs import MAX_IMAGE_BYTES, validate_job

NAME = "validation"
TARGET_MS = 100.0
TARGET_MEMORY_RATIO = 3.0


@dataclass(frozen=True)
class Sizes:
    """Bytes of the large and the typical images, repeats, and seconds of the rate loop."""

    large_bytes: int
    typical_bytes: int
    repeats: int
    rate_seconds: float


FULL = Sizes(
    large_bytes=MAX_IMAGE_BYTES - 200_000, typical_bytes=1_000_000, repeats=5, rate_seconds=5
)
QUICK = Sizes(
    large_bytes=MAX_IMAGE_BYTES - 200_000, typical_bytes=1_000_000, repeats=2, rate_seconds=1
)
TINY = Sizes(large_bytes=900_000, typical_bytes=500_000, repeats=1, rate_seconds=0.2)


def noise_image(fmt: str, target: int) -> bytes:
    """A JPEG or PNG of random pixels of about `target` bytes (never more)."""
    side = 400
    data = b""
    for _ in range(8):  # grow the side until the file is within 3 % below the target
        pixels = Image.frombytes("RGB", (side, side), _random_bytes(side * side * 3))
        buffer = io.BytesIO()
        pixels.save(buffer, format=fmt, quality=95) if fmt == "JPEG" else pixels.save(
            buffer, format=fmt, compress_level=1
        )
        candidate = buffer.getvalue()
        if len(candidate) <= target:
            data = candidate
        if 0.97 * target <= len(candidate) <= target:
            break
        side = max(300, int(side * (target / len(candidate)) ** 0.5 * 0.995))
    if not data:
        raise ValueError(f"no {fmt} of 300x300 px noise fits in {target} bytes")
    return data


def _random_bytes(count: int) -> bytes:
    import random

    return random.Random(count).randbytes(count)


def message(human: bytes, cloth: bytes) -> str:
    """A job message carrying both images as Base64, as the queue delivers it."""
    return json.dumps(
        {
            "job_id": "bench-validation",
            "human_image": base64.b64encode(human).decode(),
            "cloth_image": base64.b64encode(cloth).decode(),
        }
    )


def pillow_check(text: str) -> None:
    """The baseline: decode the Base64 fields and let Pillow open and verify each."""
    fields = json.loads(text)
    for name in ("human_image", "cloth_image"):
        with Image.open(io.BytesIO(base64.b64decode(fields[name]))) as img:
            img.verify()


def best_time(check: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` runs (the least disturbed by a noisy neighbour)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        check()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_memory(check: Callable[[], object]) -> int:
    """Bytes of Python memory allocated at the peak of `check` (the input excluded)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        check()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def per_second(check: Callable[[], object], seconds: float) -> float:
    """How many times `check` runs per second on one core."""
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or count == 0:
        check()
        count += 1
    return count / elapsed


def large_case(fmt: str, sizes: Sizes, small: bytes) -> dict[str, Any]:
    """One large image (as the human photo, with a small garment) validated and timed."""
    image = noise_image(fmt, sizes.large_bytes)
    text = message(image, small)

    def ours() -> object:
        return validate_job(text)

    def pillow() -> None:
        pillow_check(text)

    ours_s, pillow_s = best_time(ours, sizes.repeats), best_time(pillow, sizes.repeats)
    ours_peak, pillow_peak = peak_memory(ours), peak_memory(pillow)
    return {
        "image_bytes": len(image),
        "message_bytes": len(text),
        "validate_ms": ms(ours_s),
        "pillow_verify_ms": ms(pillow_s),
        "time_ratio": round(ours_s / pillow_s, 2),
        "peak_bytes": ours_peak,
        "peak_over_payload": round(ours_peak / len(image), 2),
        "pillow_peak_over_payload": round(pillow_peak / len(image), 2),
        "meets_targets": ours_s * 1000 < TARGET_MS and ours_peak < TARGET_MEMORY_RATIO * len(image),
    }


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """The 10 MB JPEG and PNG cases, then the rate for typical 1 MB images."""
    small = (SAMPLES / "cloth-red.png").read_bytes()  # a real garment photo, 5 KB
    figures: dict[str, Any] = {
        "jpeg_10mb": large_case("JPEG", sizes, small),
        "png_10mb": large_case("PNG", sizes, small),
    }
    human, cloth = noise_image("JPEG", sizes.typical_bytes), noise_image("PNG", sizes.typical_bytes)
    text = message(human, cloth)
    ours = per_second(lambda: validate_job(text), sizes.rate_seconds)
    pillow = per_second(lambda: pillow_check(text), sizes.rate_seconds)
    figures["typical_1mb"] = {
        "human_jpeg_bytes": len(human),
        "cloth_png_bytes": len(cloth),
        "jobs_per_s_per_core": round(ours, 1),
        "pillow_jobs_per_s": round(pillow, 1),
        "ratio": round(ours / pillow, 3),
    }
    write_result(out_dir, NAME, sizes, figures)
    return figures
