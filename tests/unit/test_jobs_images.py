"""Image rules: JPEG/PNG only, at most 10 MB, sides >= 300 px, complete, no bombs, strict Base64."""

from __future__ import annotations

import io
import os
import random
import textwrap
import time
import tracemalloc

import pytest
from jobs_images import (
    b64,
    image_bytes,
    jpeg,
    png,
    png_of_size,
)
from PIL import Image

from harness import png_claiming, png_inflating
from kolors_tryon.jobs import MAX_IMAGE_BYTES, ImageInfo, JobRejected, validate_job
from kolors_tryon.jobs.images import (
    MAX_PIXELS,
    MAX_SIDE,
    ImageProblem,
    _png_image_data_status,
    inspect_image,
    inspect_image_bytes,
)


def _refusal(data: bytes | str) -> ImageProblem:
    with pytest.raises(ImageProblem) as caught:
        inspect_image(data)
    return caught.value


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (jpeg(), "JPEG"),
        (png(), "PNG"),
        (image_bytes("JPEG", progressive=True), "JPEG"),
        (image_bytes("PNG", interlace=1), "PNG"),
    ],
    ids=["jpeg", "png", "progressive-jpeg", "interlaced-png"],
)
def test_jpeg_and_png_are_accepted(data: bytes, fmt: str) -> None:
    """Valid JPEG and PNG files pass, with format, size and dimensions read from the bytes."""
    assert inspect_image(data) == ImageInfo(fmt, 300, 300, len(data))


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("GIF", "GIF"), ("WEBP", "WebP"), ("BMP", "BMP"), ("TIFF", "TIFF")],
)
def test_other_formats_are_refused_by_name(fmt: str, name: str) -> None:
    """Formats Kling refuses are refused up front, naming the format found."""
    problem = _refusal(image_bytes(fmt))
    assert problem.rule == "format"
    assert f"image is {name}" in problem.message
    assert "only JPEG and PNG" in problem.message


@pytest.mark.parametrize(
    "data",
    [b"hello, world, this is no image", b"<html><body>404</body></html>", os.urandom(4096)],
    ids=["text", "html", "random"],
)
def test_unrecognizable_data_is_refused(data: bytes) -> None:
    """Data that is no image at all is refused as such."""
    problem = _refusal(data)
    assert problem.rule == "format"
    assert "not a recognizable image" in problem.message


def test_a_jpeg_named_png_is_judged_by_its_bytes() -> None:
    """A data: prefix declaring PNG does not matter: JPEG bytes are JPEG."""
    info = inspect_image("data:image/png;base64," + b64(jpeg()))
    assert info.format == "JPEG"


@pytest.mark.parametrize(
    ("width", "height", "fmt"),
    [(299, 300, "PNG"), (300, 299, "PNG"), (299, 300, "JPEG"), (300, 299, "JPEG"), (50, 50, "PNG")],
)
def test_images_smaller_than_300_px_are_refused(width: int, height: int, fmt: str) -> None:
    """Either side below 300 px is refused, saying the size found and the minimum."""
    problem = _refusal(image_bytes(fmt, width, height))
    assert problem.rule == "min_size"
    assert problem.message == (
        f"image is {width}x{height} px; width and height must be at least 300 px"
    )


@pytest.mark.parametrize(("width", "height"), [(300, 300), (300, 1200), (4000, 300)])
def test_images_of_at_least_300_px_are_accepted(width: int, height: int) -> None:
    """300 px on each side is enough, whatever the aspect ratio."""
    info = inspect_image(png(width, height))
    assert (info.width, info.height) == (width, height)


def test_an_image_of_exactly_10_mb_is_accepted() -> None:
    """The limit is inclusive: 10 MB (10485760 bytes) exactly passes."""
    data = png_of_size(MAX_IMAGE_BYTES)
    assert len(data) == MAX_IMAGE_BYTES
    assert inspect_image(data).size_bytes == MAX_IMAGE_BYTES


def test_an_image_of_10_mb_plus_one_byte_is_refused() -> None:
    """One byte over 10 MB is refused, saying the size and the limit."""
    problem = _refusal(png_of_size(MAX_IMAGE_BYTES + 1))
    assert problem.rule == "max_bytes"
    assert "10485761 bytes" in problem.message
    assert "at most 10 MB (10485760 bytes)" in problem.message


def test_oversized_base64_is_refused_before_decoding() -> None:
    """Base64 decoding to more than 10 MB is refused from its length alone."""
    problem = _refusal("A" * (4 * (MAX_IMAGE_BYTES // 3 + 1)))
    assert problem.rule == "max_bytes"
    assert "10 MB" in problem.message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (jpeg()[: len(jpeg()) // 2], "no end-of-image marker"),
        (jpeg()[:-2], "no end-of-image marker"),
        (png()[:-20], "no IEND chunk"),
        (png()[:-12], "no IEND chunk"),
    ],
    ids=["jpeg-half", "jpeg-no-eoi", "png-cut", "png-no-iend"],
)
def test_truncated_files_are_refused(data: bytes, fragment: str) -> None:
    """A file cut short is refused as truncated."""
    problem = _refusal(data)
    assert problem.rule == "truncated"
    assert fragment in problem.message


def test_png_whose_pixel_data_is_cut_is_refused() -> None:
    """A PNG with IEND and good CRCs but too little pixel data is refused as truncated."""
    problem = _refusal(png_claiming(1000, 1000))
    assert problem.rule == "truncated"
    assert "compressed image data ends early" in problem.message


def test_jpeg_with_trailing_padding_is_accepted() -> None:
    """Zero bytes after a JPEG's end-of-image marker are padding, not damage."""
    data = jpeg() + b"\x00" * 64
    assert inspect_image(data).format == "JPEG"


def _flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


@pytest.mark.parametrize(
    "data",
    [
        # Seeded noise: random bytes after FF D8 FF are now and then a frame header with
        # a huge size, which is refused as `max_pixels` before anything is decoded.
        b"\x89PNG\r\n\x1a\n" + random.Random(600).randbytes(600),
        b"\xff\xd8\xff" + random.Random(3000).randbytes(3000) + b"\xff\xd9",
        _flip_byte(png(), 60),
        _flip_byte(png(), 20),
    ],
    ids=["png-signature-then-noise", "jpeg-markers-around-noise", "png-bad-idat", "png-bad-ihdr"],
)
def test_corrupt_files_are_refused(data: bytes) -> None:
    """Files that start like JPEG or PNG but are damaged inside are refused as corrupt."""
    problem = _refusal(data)
    assert problem.rule == "corrupt"
    assert "corrupt" in problem.message


def _with_bogus_huffman_table(data: bytes) -> bytes:
    """The JPEG with its first Huffman table claiming more codes than a table holds."""
    at = data.index(b"\xff\xc4")  # DHT: marker, length, class/id, then 16 code counts
    counts = at + 5
    return data[:counts] + bytes([255] * 16) + data[counts + 16 :]


def test_a_jpeg_libjpeg_cannot_start_decoding_is_corrupt() -> None:
    """Headers Pillow reads but libjpeg refuses (a bogus Huffman table) are found by
    decoding the start of the scan: the file is refused as corrupt, not sent to Kling."""
    problem = _refusal(_with_bogus_huffman_table(jpeg()))
    assert problem.rule == "corrupt"


def test_libjpeg_loads_a_cut_scan_so_the_end_marker_is_the_truncation_check() -> None:
    """Why the check decodes only the start of the scan: libjpeg loads a scan cut in the
    middle (FFD9 glued on) without an error, so decoding all of it proves no more than the
    end marker does; a valid JPEG passes the check."""
    data = jpeg(1200, 1200)
    cut = data[: len(data) // 2] + b"\xff\xd9"
    with Image.open(io.BytesIO(cut)) as img:
        img.load()  # no error: a warning inside libjpeg
    assert inspect_image(data).format == "JPEG"


@pytest.mark.parametrize(
    ("width", "height"),
    [(50_000, 50_000), (10_000, 10_000), (9000, 9000), (MAX_SIDE + 1, 300), (8000, 5001)],
    ids=["over-pillow-error-limit", "in-pillow-warning-band", "81-mp", "long-side", "40-mp-1"],
)
def test_images_over_the_pixel_limits_are_refused_naming_them(width: int, height: int) -> None:
    """A header claiming too many pixels, or too long a side, is refused naming both limits."""
    problem = _refusal(png_claiming(width, height))
    assert problem.rule == "max_pixels"
    assert f"image is {width}x{height} px" in problem.message
    assert f"at most {MAX_SIDE} px a side and {MAX_PIXELS} pixels" in problem.message
    assert "decompression bomb" in problem.message


def test_images_at_the_pixel_limits_pass_the_pixel_check() -> None:
    """An image of exactly the limits gets past the pixel check (and on to the next one)."""
    assert MAX_SIDE * (MAX_PIXELS // MAX_SIDE) <= MAX_PIXELS
    problem = _refusal(png_claiming(MAX_SIDE, MAX_PIXELS // MAX_SIDE))
    assert problem.rule == "truncated"  # its pixel data is missing: checked after the limits


def test_jpeg_pixel_limit_is_read_from_the_frame_header() -> None:
    """A JPEG whose frame header claims too many pixels is refused before libjpeg decodes it."""
    data = bytearray(jpeg())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") + (9000).to_bytes(2, "big")
    problem = _refusal(bytes(data))
    assert problem.rule == "max_pixels"
    assert "image is 9000x9000 px" in problem.message


def test_bomb_guard_holds_with_pillow_limit_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own pixel limit refuses a bomb even if someone turned Pillow's guard off."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert _refusal(png_claiming(50_000, 50_000)).rule == "max_pixels"


def _cost(data: bytes) -> tuple[float, int, str]:
    """(seconds, peak bytes traced, outcome) of one `inspect_image_bytes`."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome = inspect_image_bytes(data).format
    except ImageProblem as exc:
        outcome = exc.rule
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, outcome


def test_an_inflating_png_is_refused_cheaper_than_a_normal_1_mb_image_is_checked() -> None:
    """A 630 KB PNG claiming 9000x9000 16-bit pixels (648 MB inflated) is refused from its
    header, faster and in less memory than a normal 1 MB image is checked, same run."""
    bomb = png_inflating(9000, 9000)
    assert 600_000 < len(bomb) < 700_000
    normal = png(660, 660)  # a noisy 660x660 PNG of about 1 MB
    photo = jpeg(1600, 1600)  # a noisy 1600x1600 JPEG of about 1 MB
    runs = {
        name: [_cost(data) for _ in range(3)]
        for name, data in (("bomb", bomb), ("png-1mb", normal), ("jpeg-1mb", photo))
    }
    assert {outcome for _, _, outcome in runs["bomb"]} == {"max_pixels"}
    assert {outcome for _, _, outcome in runs["png-1mb"]} == {"PNG"}
    assert {outcome for _, _, outcome in runs["jpeg-1mb"]} == {"JPEG"}
    best = {name: min(t for t, _, _ in costs) for name, costs in runs.items()}
    peak = {name: max(p for _, p, _ in costs) for name, costs in runs.items()}
    # What the refusal spares: the completeness check of the old order, inflating it all.
    started = time.perf_counter()
    assert _png_image_data_status(bomb) is None
    inflating = time.perf_counter() - started
    print(
        f"\nbomb {len(bomb)} bytes refused in {best['bomb'] * 1000:.2f} ms, peak "
        f"{peak['bomb'] / 1024:.0f} KiB; png 1 MB {best['png-1mb'] * 1000:.2f} ms, "
        f"{peak['png-1mb'] / 1024:.0f} KiB; jpeg {len(photo)} bytes "
        f"{best['jpeg-1mb'] * 1000:.2f} ms, {peak['jpeg-1mb'] / 1024:.0f} KiB; "
        f"inflating the bomb instead: {inflating * 1000:.0f} ms"
    )
    for name in ("png-1mb", "jpeg-1mb"):
        assert best["bomb"] < best[name]
        assert peak["bomb"] < peak[name]
    assert best["bomb"] * 10 < inflating


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("!!!!" + b64(png()), "character '!'"),
        (b64(png()).replace("+", "-").replace("/", "_") + "-_", "URL-safe"),
        ("QUJD" + "QQ", "not a multiple of 4"),
        ("QUJDQQ=", "not a multiple of 4"),
        ("QQ=AQUJD", "'=' padding may only end the data"),
        ("QUJDRA===", "'=' padding may only end the data"),
        ("QUJD\u00e9QUJD", "U+00E9"),
        ("", "empty"),
    ],
    ids=[
        "bang",
        "url-safe",
        "no-padding",
        "short-padding",
        "pad-inside",
        "triple-pad",
        "nonascii",
        "empty",
    ],
)
def test_bad_base64_is_refused(text: str, fragment: str) -> None:
    """Malformed Base64 is refused with what is wrong and the alphabet accepted."""
    problem = _refusal(text)
    assert problem.rule == "base64"
    assert fragment in problem.message


def test_line_wrapped_base64_is_accepted() -> None:
    """Whitespace of wrapped Base64 (MIME, base64(1)) is removed on purpose before decoding."""
    wrapped = "\n".join(textwrap.wrap(b64(png()), 76)) + "\r\n"
    assert inspect_image(wrapped).format == "PNG"


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("data:image/png;base64,", True),
        ("DATA:image/jpeg;base64,", True),
        ("data:;base64,", True),
        ("data:image/png;charset=utf-8;base64,", True),
        ("data:image/png,", False),
        ("data:image/png;base64", False),
    ],
)
def test_data_prefix_is_accepted_only_for_base64(prefix: str, ok: bool) -> None:
    """data: URIs are accepted when Base64-encoded; other data: forms are refused."""
    text = prefix + b64(png())
    if ok:
        assert inspect_image(text).format == "PNG"
    else:
        assert _refusal(text).rule == "format"


def _job(human: str, cloth: str | None = None) -> dict[str, object]:
    return {"human_image": human, "cloth_image": cloth if cloth is not None else b64(jpeg())}


def test_data_prefix_is_stripped_in_the_create_body() -> None:
    """Kling refuses the data: prefix, so the body (and the message) carry bare Base64."""
    bare = b64(png())
    job = validate_job(_job("data:image/png;base64," + bare))
    assert job.body.human_image == bare
    assert job.message.human_image == bare
    assert job.body.to_request()["human_image"] == bare


def test_wrapped_base64_reaches_the_create_body_unwrapped() -> None:
    """Line breaks are removed from the Base64 sent to Kling."""
    bare = b64(png())
    job = validate_job(_job("\n".join(textwrap.wrap(bare, 64))))
    assert job.body.human_image == bare


def test_valid_job_reports_what_was_learnt_about_each_image() -> None:
    """ValidJob carries the ImageInfo of both Base64 images."""
    human, cloth = png(320, 480), jpeg(300, 300)
    job = validate_job(_job(b64(human), b64(cloth)))
    assert job.human == ImageInfo("PNG", 320, 480, len(human))
    assert job.cloth == ImageInfo("JPEG", 300, 300, len(cloth))


@pytest.mark.parametrize(
    ("human", "rule", "fragment"),
    [
        (b64(image_bytes("GIF")), "format", "image is GIF"),
        (b64(image_bytes("WEBP")), "format", "image is WebP"),
        (b64(png(299, 300)), "min_size", "image is 299x300 px"),
        (b64(png_of_size(MAX_IMAGE_BYTES + 1)), "max_bytes", "10 MB"),
        (b64(jpeg()[:-100]), "truncated", "truncated"),
        (b64(png_claiming(50_000, 50_000)), "max_pixels", "decompression bomb"),
        ("not base64!", "base64", "not valid Base64"),
    ],
    ids=["gif", "webp", "small", "big", "truncated", "bomb", "base64"],
)
def test_image_problems_reject_the_job_naming_the_field(
    human: str, rule: str, fragment: str
) -> None:
    """Through validate_job, an image problem names the field and the rule."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(human))
    (problem,) = caught.value.problems
    assert (problem.field, problem.rule) == ("human_image", rule)
    assert fragment in problem.message
    assert str(problem).startswith("human_image: ")


def test_both_images_are_checked_and_reported() -> None:
    """Problems in both images are reported together, in field order."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(b64(png(100, 100)), b64(image_bytes("GIF"))))
    assert [(p.field, p.rule) for p in caught.value.problems] == [
        ("human_image", "min_size"),
        ("cloth_image", "format"),
    ]


def test_rejections_never_quote_image_data() -> None:
    """No Base64 of the images appears in the reason, whatever the problem."""
    human = b64(png(299, 300))
    cloth = "data:image/gif;base64," + b64(image_bytes("GIF"))
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(human, cloth))
    reason = caught.value.reason
    assert human[:24] not in reason
    assert cloth[22:46] not in reason
    assert len(reason) < 400


def test_inspect_image_bytes_refuses_empty_data() -> None:
    """Zero bytes are no image."""
    with pytest.raises(ImageProblem) as caught:
        inspect_image_bytes(b"")
    assert caught.value.rule == "format"
