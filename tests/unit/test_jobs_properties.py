"""Property: validate_job returns a ValidJob or raises JobRejected, for any input at all."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobs_images import b64, image_bytes, jpeg, png

from kolors_tryon.jobs import JobRejected, ValidJob, validate_job

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Real images, so that some generated jobs are valid and the success path is exercised.
REAL_IMAGES = [b64(png()), b64(jpeg()), b64(png(299, 300)), b64(image_bytes("GIF"))]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    ),
    max_leaves=20,
)
image_values = st.one_of(
    st.sampled_from(REAL_IMAGES),
    st.binary(max_size=300).map(lambda data: base64.b64encode(data).decode()),
    st.binary(max_size=300).map(
        lambda data: "data:image/png;base64," + base64.b64encode(data).decode()
    ),
    st.sampled_from(
        ["https://cdn.example.com/a.jpg?sig=1", "ftp://x/y", "javascript:0", "http://"]
    ),
    st.text(max_size=40),
    json_values,
)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "job_id": st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True), json_values),
    "model_name": st.one_of(
        st.sampled_from(["kolors-virtual-try-on-v1", "kolors-virtual-try-on-v1-5"]), json_values
    ),
    "human_image": image_values,
    "cloth_image": image_values,
    "callback_url": st.one_of(st.sampled_from(["https://h.example.com/cb", None]), json_values),
    "metadata": json_values,
    "garments": st.one_of(
        st.lists(st.sampled_from(["top", "bottom", "dress", "hat"]), max_size=4), json_values
    ),
    "priority": st.one_of(st.integers(min_value=-3, max_value=12), json_values),
    "model": json_values,
}
job_dicts = st.fixed_dictionaries(
    {"human_image": image_values, "cloth_image": image_values},
    optional={name: strategy for name, strategy in field_values.items() if "image" not in name},
)


def _outcome(raw: Any) -> ValidJob | JobRejected:
    try:
        return validate_job(raw)
    except JobRejected as rejection:
        assert rejection.problems, "a rejection always says why"
        assert all(problem.rule != "internal" for problem in rejection.problems), rejection
        return rejection


@BOUNDED
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    """Any bytes end in a ValidJob or a JobRejected, nothing else."""
    _outcome(raw)


@BOUNDED
@given(st.text(max_size=2000))
def test_arbitrary_text(raw: str) -> None:
    """Any text ends in a ValidJob or a JobRejected, nothing else."""
    _outcome(raw)


@BOUNDED
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    """Any JSON value, as text and (when an object) as a mapping, is judged without crashing."""
    _outcome(json.dumps(value))
    if isinstance(value, dict):
        _outcome(value)


@BOUNDED
@given(job_dicts)
def test_job_shaped_dicts(fields: dict[str, Any]) -> None:
    """Messages with the real field names and arbitrary values are judged without crashing."""
    as_mapping = _outcome(fields)
    as_json = _outcome(json.dumps(fields).encode())
    assert type(as_mapping) is type(as_json)
    if isinstance(as_mapping, ValidJob):
        assert isinstance(as_json, ValidJob)
        assert as_mapping.job_id == as_json.job_id == as_mapping.body.external_task_id
    else:
        assert isinstance(as_json, JobRejected)
        assert as_mapping.job_id == as_json.job_id
        # Image data never leaks into the reason, whatever went wrong.
        for name in ("human_image", "cloth_image"):
            value = fields[name]
            if isinstance(value, str) and len(value) >= 100:
                assert value[-60:] not in as_mapping.reason
