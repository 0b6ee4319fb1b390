"""The sample photos bundled with the package, and valid jobs made of them."""

from __future__ import annotations

import base64
from pathlib import Path

import kolors_tryon
from kolors_tryon.config import Settings

SAMPLES = Path(kolors_tryon.__file__).resolve().parent / "samples"


def sample_b64(name: str) -> str:
    """A bundled sample photo as bare Base64, as a job message carries it."""
    return base64.b64encode((SAMPLES / name).read_bytes()).decode()


def publish_jobs(settings: Settings, count: int, prefix: str) -> list[str]:
    """Publish `count` valid, distinct jobs over one connection; returns their ids."""
    from kolors_tryon import JobPublisher

    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(settings) as publisher:
        return [
            publisher.publish(
                {
                    "job_id": f"{prefix}-{i:04d}",
                    "human_image": human,
                    "cloth_image": cloth,
                    "metadata": {"n": i},
                }
            )
            for i in range(count)
        ]
