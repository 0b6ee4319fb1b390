"""Garment combinations per model (KLING_API.md "Garments"), refused before any credit is spent."""

from __future__ import annotations

from typing import Any

import pytest
from jobs_images import b64, jpeg, png

from kolors_tryon.jobs import JobRejected, validate_job

V1 = "kolors-virtual-try-on-v1"
V1_5 = "kolors-virtual-try-on-v1-5"
SINGLE_ON_V1 = "kolors-virtual-try-on-v1 takes a single garment"
TOP_BOTTOM_HINT = "use kolors-virtual-try-on-v1-5 for top+bottom"
REFUSED_ON_V1_5 = "is a combination the API refuses"

HUMAN, CLOTH = b64(png()), b64(jpeg())

# (model, garments, accepted, fragment of the refusal)
TABLE: list[tuple[str, list[str], bool, str]] = [
    # one garment: every model
    (V1, ["top"], True, ""),
    (V1, ["bottom"], True, ""),
    (V1, ["dress"], True, ""),
    (V1_5, ["top"], True, ""),
    (V1_5, ["bottom"], True, ""),
    (V1_5, ["dress"], True, ""),
    # top + bottom: v1-5 only, in any order
    (V1_5, ["top", "bottom"], True, ""),
    (V1_5, ["bottom", "top"], True, ""),
    (V1, ["top", "bottom"], False, TOP_BOTTOM_HINT),
    (V1, ["bottom", "top"], False, TOP_BOTTOM_HINT),
    # every other pair fails on v1-5, named as sent ...
    (V1_5, ["top", "top"], False, "top+top " + REFUSED_ON_V1_5),
    (V1_5, ["bottom", "bottom"], False, "bottom+bottom " + REFUSED_ON_V1_5),
    (V1_5, ["dress", "dress"], False, "dress+dress " + REFUSED_ON_V1_5),
    (V1_5, ["top", "dress"], False, "top+dress " + REFUSED_ON_V1_5),
    (V1_5, ["dress", "top"], False, "dress+top " + REFUSED_ON_V1_5),
    (V1_5, ["bottom", "dress"], False, "bottom+dress " + REFUSED_ON_V1_5),
    (V1_5, ["dress", "bottom"], False, "dress+bottom " + REFUSED_ON_V1_5),
    # ... and every pair fails on v1
    (V1, ["top", "top"], False, SINGLE_ON_V1),
    (V1, ["bottom", "bottom"], False, SINGLE_ON_V1),
    (V1, ["dress", "dress"], False, SINGLE_ON_V1),
    (V1, ["top", "dress"], False, SINGLE_ON_V1),
    (V1, ["dress", "top"], False, SINGLE_ON_V1),
    (V1, ["bottom", "dress"], False, SINGLE_ON_V1),
    (V1, ["dress", "bottom"], False, SINGLE_ON_V1),
    # empty lists and more than two items: never
    (V1, [], False, "list is empty"),
    (V1_5, [], False, "list is empty"),
    (V1, ["top", "bottom", "dress"], False, "lists 3 garments"),
    (V1_5, ["top", "bottom", "top"], False, "lists 3 garments"),
]


def _job(**fields: Any) -> dict[str, Any]:
    return {"human_image": HUMAN, "cloth_image": CLOTH, **fields}


@pytest.mark.parametrize(
    ("model", "garments", "accepted", "fragment"),
    TABLE,
    ids=[
        f"{m.removeprefix('kolors-virtual-try-on-')}:{'+'.join(g) or 'none'}"
        for m, g, _, _ in TABLE
    ],
)
def test_garment_combinations(
    model: str, garments: list[str], accepted: bool, fragment: str
) -> None:
    """Each model accepts exactly the combinations the API documents."""
    raw = _job(model_name=model, garments=garments)
    if accepted:
        assert [g.value for g in validate_job(raw).message.garments or []] == garments
        return
    with pytest.raises(JobRejected) as caught:
        validate_job(raw)
    (problem,) = caught.value.problems
    assert (problem.field, problem.rule) == ("garments", "garments")
    assert fragment in problem.message


def test_v1_pair_message_is_the_documented_one() -> None:
    """top+bottom on v1 says exactly what to do."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(garments=["top", "bottom"]))
    assert caught.value.reason == (
        "garments: kolors-virtual-try-on-v1 takes a single garment; "
        "use kolors-virtual-try-on-v1-5 for top+bottom"
    )


@pytest.mark.parametrize("garments", [None, "absent"])
def test_no_garments_means_no_check(garments: Any) -> None:
    """Without garments (absent or null) no combination rule applies."""
    raw = _job() if garments == "absent" else _job(garments=garments)
    assert validate_job(raw).message.garments is None


def test_unknown_garment_is_refused_by_position() -> None:
    """A garment outside top/bottom/dress is refused, naming its place in the list."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(garments=["top", "hat"]))
    (problem,) = caught.value.problems
    assert (problem.field, problem.rule) == ("garments[1]", "enum")
    assert "'top' or 'bottom' or 'dress'" in problem.message
    assert "got 'hat'" in problem.message


def test_garments_must_be_a_list() -> None:
    """A bare string is not a list of garments."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(garments="top"))
    assert [(p.field, p.rule) for p in caught.value.problems] == [("garments", "type")]


def test_impossible_pair_is_refused_even_with_a_bad_model_name() -> None:
    """A pair no model accepts is still reported when model_name itself is wrong."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(model_name="v2", garments=["dress", "dress"]))
    assert [(p.field, p.rule) for p in caught.value.problems] == [
        ("model_name", "enum"),
        ("garments", "garments"),
    ]


def test_top_and_bottom_with_a_bad_model_name_only_reports_the_model() -> None:
    """top+bottom depends on the model, so with an unknown model only the model is wrong."""
    with pytest.raises(JobRejected) as caught:
        validate_job(_job(model_name="v2", garments=["top", "bottom"]))
    assert [(p.field, p.rule) for p in caught.value.problems] == [("model_name", "enum")]
