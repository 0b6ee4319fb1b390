"""Which garment combinations each model can try on (KLING_API.md, "Garments").

v1 takes a single item; v1-5 also takes a top and a bottom merged into one image. Every
other pair fails at the API, after the job has waited for an account slot, so we refuse
it up front when the producer tells us what the cloth image shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from kolors_tryon.jobs.enums import Garment, ModelName

__all__ = ["garment_problem"]

_TOP_AND_BOTTOM = frozenset({Garment.TOP, Garment.BOTTOM})


def garment_problem(model: ModelName | None, garments: Sequence[Garment]) -> str | None:
    """Say why `garments` cannot be tried on with `model`, or return None if they can.

    Args:
        model: The job's model, or None when the model name itself is invalid (then only
            the checks that hold for every model are made).
        garments: What the cloth image shows, as the producer listed it.

    Returns:
        A message naming the combination and what is accepted, or None.
    """
    one = "one garment (top, bottom or dress)"
    if not garments:
        return f"list is empty; give {one}, or top and bottom on {ModelName.V1_5}, or omit it"
    if len(garments) > 2:
        return f"lists {len(garments)} garments; give {one}, or top and bottom on {ModelName.V1_5}"
    if len(garments) == 1:
        return None
    combination = "+".join(g.value for g in garments)
    is_top_and_bottom = frozenset(garments) == _TOP_AND_BOTTOM
    if model is ModelName.V1:
        if is_top_and_bottom:
            return f"{ModelName.V1} takes a single garment; use {ModelName.V1_5} for top+bottom"
        return (
            f"{ModelName.V1} takes a single garment, and {combination} is refused by "
            f"{ModelName.V1_5} too; send {one} per job"
        )
    if not is_top_and_bottom:
        return (
            f"{combination} is a combination the API refuses; {ModelName.V1_5} takes {one} "
            "or a top and a bottom (top+bottom) in one image"
        )
    return None
