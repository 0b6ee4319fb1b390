"""A corpus of bad job messages, as producers really get them wrong (DESIGN.md invariant 5).

Each `Case` is one message paired with the field(s) its rejection must name and, where
it matters, words the reason must hold. Image payloads stay `Img` (bytes) until a door
needs them: Base64 for the Python and AMQP doors (`Case.resolved`), a file beside the
JSON Lines file for `tryon batch`, which reads image paths relative to the file
(`Case.for_batch`). Both forms publish the same job, so the ids are the same rule.

Everything is small (a few KB per image) except one 10 MB + 1 byte PNG per corpus.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from harness import (
    PNG_IEND,
    PNG_SIGNATURE,
    SAMPLES,
    png_chunk,
    png_claiming,
    png_inflating,
    png_padded,
)
from kolors_tryon.jobs import job_id_of

IMAGE_FIELDS = ("human_image", "cloth_image")
V1 = "kolors-virtual-try-on-v1"
V1_5 = "kolors-virtual-try-on-v1-5"
MISSING: Any = object()  # a change that removes the key


@dataclass(frozen=True)
class Img:
    """Image bytes that travel as Base64 or as a file, depending on the door."""

    data: bytes
    suffix: str = ".bin"

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def file_name(self) -> str:
        return f"img-{hashlib.sha256(self.data).hexdigest()[:16]}{self.suffix}"


@dataclass(frozen=True)
class Case:
    """One bad message and what its rejection must say.

    Attributes:
        name: Short, unique, usable in a job id.
        message: The message; `Img` values stand for image files.
        fields: Field names the reason must mention.
        says: Words (case-insensitive) the reason must hold: the rule in plain words.
        never_says: Input fragments the reason must not quote.
    """

    name: str
    message: dict[str, Any]
    fields: tuple[str, ...]
    says: tuple[str, ...] = ()
    never_says: tuple[str, ...] = ()

    def resolved(self) -> dict[str, Any]:
        """The message as the Python and AMQP doors publish it: images as Base64."""
        return {key: _as_base64(value) for key, value in self.message.items()}

    def for_batch(self, folder: Path) -> dict[str, Any]:
        """The message as a JSON Lines entry for `tryon batch`: a top-level image is a file
        in `folder` (written here), which the command reads back into Base64; images
        anywhere else (a list, an unknown field) stay Base64, as the command leaves them."""
        entry: dict[str, Any] = {}
        for key, value in self.message.items():
            if key in IMAGE_FIELDS and isinstance(value, Img):
                path = folder / value.file_name()
                if not path.exists():
                    path.write_bytes(value.data)
                entry[key] = value.file_name()
            else:
                entry[key] = _as_base64(value)
        return entry

    @property
    def job_id(self) -> str:
        """The id the worker records the rejection under (its own, or derived)."""
        return job_id_of(self.resolved())

    def long_strings(self) -> Iterator[str]:
        """Every long string the message carries (image data, long URLs...), for leak checks."""

        def walk(value: Any) -> Iterator[str]:
            if isinstance(value, dict):
                for item in value.values():
                    yield from walk(item)
            elif isinstance(value, list):
                for item in value:
                    yield from walk(item)
            elif isinstance(value, str) and len(value) >= 64:
                yield value

        yield from walk(self.resolved())


def _as_base64(value: Any) -> Any:
    if isinstance(value, Img):
        return value.b64()
    if isinstance(value, dict):
        return {key: _as_base64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_base64(item) for item in value]
    return value


# --------------------------------------------------------------------------- images ----
def _encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _picture(width: int, height: int) -> Image.Image:
    """A small-to-encode RGB gradient (real pixels, compresses to a few KB)."""
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return img.point(lambda v: (v * 7) % 256)


def encoded(fmt: str, width: int = 400, height: int = 400) -> bytes:
    return _encode(_picture(width, height), fmt)


def png_of_size(total: int) -> bytes:
    """A valid 400x400 PNG padded to exactly `total` bytes."""
    return png_padded(encoded("PNG"), total)


@functools.cache
def images() -> dict[str, Img]:
    """Every image of the corpus, made once."""
    png = encoded("PNG")
    jpeg = encoded("JPEG")
    idat = png.index(b"IDAT")
    bad_crc = bytearray(png)
    bad_crc[idat + 40] ^= 0xFF  # one flipped byte inside the image data: CRC mismatch
    noise = hashlib.sha256(b"noise").digest() * 64
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 400, 400, 8, 2, 0, 0, 0))
    return {
        "human": Img((SAMPLES / "human.jpg").read_bytes(), ".jpg"),
        "cloth": Img((SAMPLES / "cloth-red.png").read_bytes(), ".png"),
        "gif": Img(encoded("GIF"), ".gif"),
        "webp": Img(encoded("WEBP"), ".webp"),
        "bmp": Img(encoded("BMP"), ".bmp"),
        "tiff": Img(encoded("TIFF"), ".tiff"),
        "text": Img(b"This is the photo of the model, see attachment.\n", ".txt"),
        "pdf": Img(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", ".pdf"),
        "svg": Img(b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400"/>', ".svg"),
        "zeros": Img(b"\x00" * 4096, ".bin"),
        "empty": Img(b"", ".png"),
        "png_299x300": Img(encoded("PNG", 299, 300), ".png"),
        "png_300x299": Img(encoded("PNG", 300, 299), ".png"),
        "png_1x1": Img(encoded("PNG", 1, 1), ".png"),
        "jpeg_299x300": Img(encoded("JPEG", 299, 300), ".jpg"),
        "png_truncated": Img(png[: len(png) // 2], ".png"),
        "jpeg_truncated": Img(jpeg[: len(jpeg) // 2], ".jpg"),
        "png_cut_iend_readded": Img(png[: len(png) // 2] + PNG_IEND, ".png"),
        "png_garbage_after_header": Img(PNG_SIGNATURE + ihdr + noise, ".png"),
        "jpeg_garbage_after_soi": Img(b"\xff\xd8\xff\xe0" + noise + b"\xff\xd9", ".jpg"),
        "png_bad_crc": Img(bytes(bad_crc), ".png"),
        "png_bomb": Img(png_claiming(100_000, 100_000), ".png"),
        # 630 KB that inflates to 648 MB (issue 16 point 9): refused from its header.
        "png_inflating": Img(png_inflating(9000, 9000), ".png"),
        "png_over_10mb": Img(png_of_size(10 * 1024 * 1024 + 1), ".png"),
    }


# --------------------------------------------------------------------------- corpus ----
def corpus(tag: str) -> list[Case]:
    """The bad messages, each with its own job id `bad-<tag>-<name>`: >= 50 of them."""
    img = images()
    cases: list[Case] = []

    def case(
        name: str,
        fields: str | tuple[str, ...],
        *,
        says: tuple[str, ...] = (),
        never_says: tuple[str, ...] = (),
        **changes: Any,
    ) -> None:
        message: dict[str, Any] = {
            "job_id": f"bad-{tag}-{name}",
            "human_image": img["human"],
            "cloth_image": img["cloth"],
        }
        for key, value in changes.items():
            if value is MISSING:
                message.pop(key, None)
            else:
                message[key] = value
        fields = (fields,) if isinstance(fields, str) else fields
        cases.append(Case(name, message, fields, says, never_says))

    human, cloth = img["human"], img["cloth"]

    # Missing fields.
    case("no-human", "human_image", says=("required",), human_image=MISSING)
    case("no-cloth", "cloth_image", says=("required",), cloth_image=MISSING)
    case("no-images", ("human_image", "cloth_image"), human_image=MISSING, cloth_image=MISSING)

    # Wrong JSON types, field by field.
    case("human-number", "human_image", says=("number",), human_image=12345)
    case("human-list", "human_image", says=("array",), human_image=[human])
    case("human-null", "human_image", says=("null",), human_image=None)
    case(
        "human-object",
        "human_image",
        says=("object",),
        human_image={"url": "https://cdn.example.com/people/anna.jpg"},
    )
    case("human-bool", "human_image", says=("boolean",), human_image=True)
    case("cloth-float", "cloth_image", says=("number",), cloth_image=4.5)
    case("cloth-empty-list", "cloth_image", says=("array",), cloth_image=[])
    case(
        "cloth-object",
        "cloth_image",
        says=("object",),
        cloth_image={"data": cloth, "type": "image/png"},
    )
    case("model-number", "model_name", model_name=15)
    case("model-null", "model_name", model_name=None)
    case("callback-number", "callback_url", callback_url=42)
    case("callback-list", "callback_url", callback_url=["https://hooks.example.com/a"])
    case("metadata-string", "metadata", says=("object",), metadata="sku=1234")
    case("metadata-list", "metadata", says=("object",), metadata=["sku", "1234"])
    case("metadata-number", "metadata", metadata=7)
    case("metadata-null", "metadata", metadata=None)
    case("priority-string", "priority", priority="5")
    case("priority-float", "priority", priority=1.5)
    case("priority-bool", "priority", priority=True)
    case("priority-null", "priority", priority=None)
    case("garments-string", "garments", garments="top")
    case("garments-object", "garments", garments={"top": True})

    # Unknown fields: typos and guesses at the contract.
    case("field-model", ("model",), says=("model_name",), model=V1_5)
    case("field-image", ("image", "human_image"), human_image=MISSING, image=human)
    case(
        "field-camel-case",
        ("humanImage", "clothImage"),
        says=("human_image",),
        human_image=MISSING,
        cloth_image=MISSING,
        humanImage=human,
        clothImage=cloth,
    )
    case(
        "field-callback",
        ("callback",),
        says=("callback_url",),
        callback="https://hooks.example.com/tryon",
    )
    case("field-sku", ("sku",), says=("unknown",), sku="1234")

    # Model names.
    case("model-v2", "model_name", says=(V1, V1_5), model_name="kolors-virtual-try-on-v2")
    case("model-capitals", "model_name", model_name="Kolors-Virtual-Try-On-V1")
    case("model-kling", "model_name", model_name="kling-v1")
    case("model-empty", "model_name", model_name="")

    # Base64 and data: URIs.
    case("b64-bad-chars", "human_image", says=("base64", "'$'"), human_image="iVBORw0KGgo$AAAA*&^%")
    case(
        "b64-url-safe",
        "human_image",
        says=("url-safe",),
        human_image=base64.urlsafe_b64encode(b"\xff\xd8\xff\xe0\xfb\xff\xfe").decode(),
    )
    case("b64-pad-middle", "cloth_image", says=("padding",), cloth_image="iVBORw0KGgo=AAAAAAA")
    case(
        "b64-bad-length",
        "cloth_image",
        says=("multiple of 4",),
        cloth_image="iVBORw0KGgoAAAANSUhEUg",
    )
    case("b64-empty", "human_image", says=("empty",), human_image="")
    case("b64-blank", "cloth_image", says=("empty",), cloth_image="  \n\t ")
    case("b64-non-ascii", "human_image", says=("U+00E9",), human_image="iVBORw0KGgo\u00e9AAA")
    case(
        "data-garbage",
        "human_image",
        says=("base64",),
        human_image="data:image/png;base64,@@not*base64@@",
    )
    case("data-not-b64", "cloth_image", says=("base64",), cloth_image="data:image/png,rawbytes")
    case("data-empty", "cloth_image", says=("no data",), cloth_image="data:image/jpeg;base64,")
    case("data-no-comma", "human_image", says=("','",), human_image="data:image/png;base64")

    # Decoded bytes that are not a JPEG or PNG Kling takes.
    case("cloth-gif", "cloth_image", says=("GIF",), cloth_image=img["gif"])
    case("cloth-webp", "cloth_image", says=("WebP",), cloth_image=img["webp"])
    case("cloth-bmp", "cloth_image", says=("BMP",), cloth_image=img["bmp"])
    case("human-tiff", "human_image", says=("TIFF",), human_image=img["tiff"])
    case("human-text", "human_image", says=("JPEG",), human_image=img["text"])
    case("cloth-pdf", "cloth_image", says=("PDF",), cloth_image=img["pdf"])
    case("human-svg", "human_image", says=("SVG",), human_image=img["svg"])
    case("human-zeros", "human_image", says=("JPEG",), human_image=img["zeros"])
    case("cloth-empty-file", "cloth_image", says=("empty",), cloth_image=img["empty"])

    # Sizes, truncation, corruption, bombs.
    case("cloth-299x300", "cloth_image", says=("299x300", "300"), cloth_image=img["png_299x300"])
    case("cloth-300x299", "cloth_image", says=("300x299",), cloth_image=img["png_300x299"])
    case("cloth-1x1", "cloth_image", says=("1x1",), cloth_image=img["png_1x1"])
    case("human-jpeg-299x300", "human_image", says=("299x300",), human_image=img["jpeg_299x300"])
    case(
        "cloth-png-truncated", "cloth_image", says=("truncated",), cloth_image=img["png_truncated"]
    )
    case(
        "human-jpeg-truncated",
        "human_image",
        says=("truncated",),
        human_image=img["jpeg_truncated"],
    )
    case("cloth-png-cut-iend", "cloth_image", cloth_image=img["png_cut_iend_readded"])
    case("cloth-png-garbage", "cloth_image", cloth_image=img["png_garbage_after_header"])
    case(
        "human-jpeg-garbage",
        "human_image",
        says=("JPEG",),
        human_image=img["jpeg_garbage_after_soi"],
    )
    case("cloth-png-bad-crc", "cloth_image", says=("PNG",), cloth_image=img["png_bad_crc"])
    case("cloth-png-bomb", "cloth_image", says=("decompression bomb",), cloth_image=img["png_bomb"])
    case("cloth-over-10mb", "cloth_image", says=("10 MB",), cloth_image=img["png_over_10mb"])
    case(
        "human-png-9000x9000-16bit",
        "human_image",
        says=("9000x9000", "40000000 pixels", "decompression bomb"),
        human_image=img["png_inflating"],
    )

    # Image URLs Kling cannot fetch.
    case(
        "human-ftp",
        "human_image",
        says=("ftp",),
        human_image="ftp://files.example.com/people/anna.jpg",
    )
    case(
        "cloth-file-url",
        "cloth_image",
        says=("file",),
        cloth_image="file:///home/shop/catalogue/sku-1234.png",
    )
    case(
        "human-javascript",
        "human_image",
        says=("javascript",),
        never_says=("alert", "cookie"),
        human_image="javascript:alert(document.cookie)",
    )
    case("cloth-no-host", "cloth_image", says=("host",), cloth_image="https:///sku-1234.png")
    case("human-relative-path", "human_image", human_image="photos/anna.jpg")
    case("cloth-scheme-relative", "cloth_image", cloth_image="//cdn.example.com/sku-1234.png")
    case(
        "human-url-spaces",
        "human_image",
        says=("spaces",),
        human_image="https://cdn.example.com/people/anna smith.jpg",
    )
    case("cloth-bad-port", "cloth_image", cloth_image="https://cdn.example.com:99999/sku.png")
    case("human-s3-url", "human_image", says=("s3",), human_image="s3://shop-bucket/anna.jpg")

    # Callback URLs.
    case("callback-ftp", "callback_url", says=("ftp",), callback_url="ftp://hooks.example.com/t")
    case(
        "callback-javascript",
        "callback_url",
        never_says=("alert",),
        callback_url="javascript:alert(1)",
    )
    case("callback-relative", "callback_url", callback_url="/hooks/tryon")
    case(
        "callback-too-long",
        "callback_url",
        says=("2048",),
        callback_url="https://hooks.example.com/" + "a" * 2100,
    )

    # Priority out of range.
    case("priority-10", "priority", says=("0 to 9",), priority=10)
    case("priority-negative", "priority", says=("0 to 9",), priority=-1)
    case("priority-huge", "priority", priority=10**12)

    # Metadata too big (> 16 KB as compact JSON).
    case("metadata-17kb", "metadata", says=("16 KB",), metadata={"notes": "x" * 17_000})
    case(
        "metadata-many-keys",
        "metadata",
        says=("16 KB",),
        metadata={f"attribute-{i:04d}": f"value-{i:04d}" for i in range(900)},
    )

    # JSON that breaks the checks themselves: nesting past 32 levels (a RecursionError in
    # intake once), text that is no Unicode (a record unreadable by GET /v1/jobs once).
    deep: Any = []
    for _ in range(200):
        deep = [deep]
    case("metadata-nested-200", "metadata", says=("nested", "32"), metadata={"tree": deep})
    case(
        "metadata-lone-surrogate",
        "metadata.note",
        says=("surrogate",),
        metadata={"note": "caf\udce9", "sku": "1234"},
    )
    case("metadata-surrogate-key", "metadata", says=("surrogate",), metadata={"\ud800": 1})

    # Garment combinations the models refuse.
    case("v1-top-bottom", "garments", says=(V1_5,), model_name=V1, garments=["top", "bottom"])
    case("default-v1-top-bottom", "garments", garments=["top", "bottom"])
    case("v1-top-dress", "garments", model_name=V1, garments=["top", "dress"])
    case("v15-top-dress", "garments", model_name=V1_5, garments=["top", "dress"])
    case("v15-bottom-bottom", "garments", model_name=V1_5, garments=["bottom", "bottom"])
    case("v15-three-items", "garments", model_name=V1_5, garments=["top", "bottom", "dress"])
    case("garments-empty", "garments", says=("empty",), model_name=V1_5, garments=[])
    case("garments-unknown", "garments", model_name=V1, garments=["hat"])

    # Several problems in one message: all are reported together.
    case(
        "many-problems",
        ("model_name", "cloth_image", "priority"),
        model_name="v1.5",
        cloth_image=MISSING,
        priority=99,
    )
    return cases


def job_id_cases(tag: str) -> list[Case]:
    """Messages whose `job_id` is unusable: recorded under the id derived from the content."""
    img = images()
    bad_ids: dict[str, Any] = {
        "number": 12345,
        "empty": "",
        "spaces-slash": "sku 1234/model 7",
        "too-long": "sku-" + "7" * 70,
        "list": ["sku-1234"],
        "bool": True,
        "non-ascii": "sku-\u00fc-7",
        "object": {"sku": "1234"},
    }
    return [
        Case(
            f"job-id-{name}",
            {
                "job_id": value,
                "human_image": img["human"],
                "cloth_image": img["cloth"],
                # Makes the derived id unique to this case and door.
                "metadata": {"case": f"job-id-{name}", "tag": tag},
            },
            ("job_id",),
        )
        for name, value in bad_ids.items()
    ]


@dataclass(frozen=True)
class NotAJob:
    """A message body that is not a JSON object: it has no id and must be dead-lettered."""

    name: str
    body: bytes
    says: str

    def publishable(self) -> bytes | str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return self.body


def not_jobs(tag: str) -> list[NotAJob]:
    """Bodies that are not JSON objects (each unique, so a dead letter maps back to it)."""
    url = f"https://cdn.example.com/{tag}/anna.jpg"
    items: list[tuple[str, str | bytes, str]] = [
        ("invalid-utf8", b'\xff\xfe{"human_image": "' + url.encode() + b'"}', "UTF-8"),
        ("truncated-json", f'{{"human_image": "{url}", "cloth_ima', "JSON"),
        ("json-array", f'[{{"human_image": "{url}"}}]', "object"),
        ("json-number", "42", "object"),
        ("empty-body", "", "empty"),
        ("json-null", "null", "object"),
        ("json-string", json.dumps(url), "object"),
        ("nan", f'{{"human_image": "{url}", "priority": NaN}}', "NaN"),
        ("duplicate-key", f'{{"human_image": "{url}", "human_image": "{url}?v=2"}}', "twice"),
        ("python-repr", f"{{'human_image': '{url}'}}", "JSON"),
        ("xml", f"<job><human_image>{url}</human_image></job>", "JSON"),
        # Too deep to parse, so no id to record it under: dead-lettered with its reason.
        ("nested-5000", f'{{"human_image": "{url}", "x": {"[" * 5000}{"]" * 5000}}}', "nested"),
    ]
    return [
        NotAJob(name, body if isinstance(body, bytes) else body.encode("utf-8"), says)
        for name, body, says in items
    ]


def valid_job(job_id: str) -> dict[str, Any]:
    """A job that must succeed: the bundled sample photos as Base64."""
    img = images()
    return {"job_id": job_id, "human_image": img["human"].b64(), "cloth_image": img["cloth"].b64()}
