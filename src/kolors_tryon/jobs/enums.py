"""The closed vocabularies of a job: Kling's model names and the garments a cloth image shows.

They live apart from the models so that the garment rule (`garments.py`) and the message
model (`models.py`) can both use them without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Garment", "ModelName"]


class ModelName(StrEnum):
    """A Kolors virtual try-on model, exactly as the API spells it."""

    V1 = "kolors-virtual-try-on-v1"
    V1_5 = "kolors-virtual-try-on-v1-5"


class Garment(StrEnum):
    """One item of clothing the cloth image shows (a one-piece dress counts as one)."""

    TOP = "top"
    BOTTOM = "bottom"
    DRESS = "dress"
