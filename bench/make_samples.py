"""Draw the bundled sample images: a person on a plain backdrop, and garments on white.

Run `python bench/make_samples.py` to redraw them; they are committed so that a fresh
clone can run the demo without this step.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "src" / "kolors_tryon" / "samples"


def person() -> Image.Image:
    """A standing figure: head, neck, torso, arms and legs over a soft studio backdrop."""
    width, height = 600, 900
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):  # a vertical gradient, like a studio backdrop
        shade = 225 - y * 40 // height
        draw.line([(0, y), (width, y)], fill=(shade, shade - 5, shade - 12))
    skin, hair, shirt, trousers = (224, 180, 150), (60, 40, 30), (90, 110, 140), (50, 55, 70)
    cx = width // 2
    draw.ellipse([cx - 55, 80, cx + 55, 210], fill=skin)  # head
    draw.chord([cx - 60, 65, cx + 60, 170], 180, 360, fill=hair)  # hair
    draw.rectangle([cx - 20, 200, cx + 20, 240], fill=skin)  # neck
    draw.rounded_rectangle([cx - 110, 235, cx + 110, 520], radius=40, fill=shirt)  # torso
    draw.rounded_rectangle([cx - 160, 250, cx - 105, 520], radius=25, fill=shirt)  # arms
    draw.rounded_rectangle([cx + 105, 250, cx + 160, 520], radius=25, fill=shirt)
    draw.ellipse([cx - 165, 505, cx - 110, 560], fill=skin)  # hands
    draw.ellipse([cx + 110, 505, cx + 165, 560], fill=skin)
    draw.rectangle([cx - 100, 510, cx - 8, 850], fill=trousers)  # legs
    draw.rectangle([cx + 8, 510, cx + 100, 850], fill=trousers)
    draw.ellipse([cx - 115, 835, cx - 5, 880], fill=(30, 30, 30))  # shoes
    draw.ellipse([cx + 5, 835, cx + 115, 880], fill=(30, 30, 30))
    return img.filter(ImageFilter.SMOOTH)


def tshirt(colour: tuple[int, int, int]) -> Image.Image:
    """A T-shirt, flat-laid on white, as a product photo would show it."""
    img = Image.new("RGB", (600, 600), "white")
    draw = ImageDraw.Draw(img)
    body = [
        (170, 150),
        (250, 110),
        (350, 110),
        (430, 150),
        (520, 240),
        (455, 300),
        (420, 265),
        (420, 520),
        (180, 520),
        (180, 265),
        (145, 300),
        (80, 240),
    ]
    draw.polygon(body, fill=colour, outline=(40, 40, 40))
    draw.arc([255, 85, 345, 150], 0, 180, fill=(40, 40, 40), width=4)  # collar
    return img.filter(ImageFilter.SMOOTH)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    person().save(OUT / "human.jpg", quality=88)
    tshirt((200, 40, 50)).save(OUT / "cloth-red.png")
    tshirt((40, 120, 200)).save(OUT / "cloth-blue.png")
    Image.new("RGB", (600, 900), (235, 235, 235)).save(OUT / "empty-backdrop.jpg", quality=90)
    Image.new("RGB", (200, 200), "white").save(OUT / "too-small.png")
    jobs = [
        {
            "job_id": "sample-red-tee",
            "human_image": "human.jpg",
            "cloth_image": "cloth-red.png",
            "metadata": {"sku": "TEE-RED"},
        },
        {
            "job_id": "sample-blue-tee",
            "model_name": "kolors-virtual-try-on-v1-5",
            "human_image": "human.jpg",
            "cloth_image": "cloth-blue.png",
            "metadata": {"sku": "TEE-BLUE"},
        },
        # The emulator, like the API, fails a task whose photo shows nobody.
        {
            "job_id": "sample-no-person",
            "human_image": "empty-backdrop.jpg",
            "cloth_image": "cloth-red.png",
            "metadata": {"sku": "TEE-RED"},
        },
        # Too small for the API: rejected at intake, no credit spent.
        {
            "job_id": "sample-too-small",
            "human_image": "human.jpg",
            "cloth_image": "too-small.png",
            "metadata": {"sku": "TEE-TINY"},
        },
    ]
    with (OUT / "jobs.jsonl").open("w") as handle:
        for job in jobs:
            handle.write(json.dumps(job) + "\n")


if __name__ == "__main__":
    main()
