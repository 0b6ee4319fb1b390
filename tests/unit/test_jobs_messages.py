"""The job message: field rules, message-level refusals, job ids, create body, schema."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jobs_images import b64, jpeg, png

from kolors_tryon.config import Settings, defaults
from kolors_tryon.jobs import (
    CreateTaskBody,
    JobMessage,
    JobRejected,
    ModelName,
    Problem,
    ValidationOptions,
    job_id_of,
    job_json_schema,
    validate_job,
)
from kolors_tryon.jobs.ids import content_digest, derive_job_id

HUMAN = b64(png())
CLOTH = b64(jpeg())
DERIVED_ID = re.compile(r"^job-[0-9a-f]{32}$")


def _job(**fields: Any) -> dict[str, Any]:
    return {"human_image": HUMAN, "cloth_image": CLOTH, **fields}


def _rejection(raw: Any) -> JobRejected:
    with pytest.raises(JobRejected) as caught:
        validate_job(raw)
    return caught.value


def _only_problem(raw: Any) -> Problem:
    problems = _rejection(raw).problems
    assert len(problems) == 1, problems
    return problems[0]


# --- valid jobs ----------------------------------------------------------------------------


def test_minimal_job_is_valid_with_defaults() -> None:
    """Two images are enough: v1, no callback, empty metadata, priority 0, a derived id."""
    job = validate_job(_job())
    assert DERIVED_ID.match(job.job_id)
    assert job.message.model_name is ModelName.V1
    assert job.message.metadata == {}
    assert job.message.priority == 0
    assert job.message.garments is None


def test_explicit_job_id_is_kept_and_sent_as_external_task_id() -> None:
    """The producer's id is the job id and Kling's external_task_id."""
    job = validate_job(_job(job_id="sku-1234-model-7"))
    assert job.job_id == "sku-1234-model-7"
    assert job.body.external_task_id == job.job_id


def test_derived_job_id_is_sent_as_external_task_id() -> None:
    """A derived id travels to Kling too, so an ambiguous create can be resolved."""
    job = validate_job(_job())
    assert job.body.external_task_id == job.job_id


def test_create_body_is_exactly_kling_fields() -> None:
    """The create body has Kling's field names and plain string values, no extras.

    The producer's callback_url is our webhook target: it never reaches Kling.
    """
    job = validate_job(
        _job(
            model_name="kolors-virtual-try-on-v1-5",
            callback_url="https://hooks.example.com/kling?token=s3cret",
            job_id="a1",
            metadata={"sku": "1"},
            priority=5,
            garments=["top", "bottom"],
        )
    )
    assert job.body.to_request() == {
        "model_name": "kolors-virtual-try-on-v1-5",
        "human_image": HUMAN,
        "cloth_image": CLOTH,
        "external_task_id": "a1",
    }
    assert job.message.callback_url == "https://hooks.example.com/kling?token=s3cret"


def test_create_body_drops_unset_optional_fields() -> None:
    """None-valued optional fields are left out of the request."""
    body = CreateTaskBody(model_name=ModelName.V1, human_image="a", cloth_image="b")
    assert body.to_request() == {
        "model_name": "kolors-virtual-try-on-v1",
        "human_image": "a",
        "cloth_image": "b",
    }


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(_job(job_id="j1")),
        json.dumps(_job(job_id="j1")).encode(),
        b"\xef\xbb\xbf" + json.dumps(_job(job_id="j1")).encode(),
        _job(job_id="j1"),
        JobMessage(human_image=HUMAN, cloth_image=CLOTH, job_id="j1"),
    ],
    ids=["str", "bytes", "bytes-with-bom", "mapping", "model"],
)
def test_every_input_form_is_accepted(raw: Any) -> None:
    """JSON text, UTF-8 bytes (BOM tolerated), a mapping or a JobMessage all validate."""
    assert validate_job(raw).job_id == "j1"


def test_urls_are_accepted_without_preflight() -> None:
    """Image URLs pass on their form alone when preflight is off; no image info is known."""
    job = validate_job(
        _job(human_image="https://cdn.example.com/p.jpg?X-Sig=1", cloth_image=" http://x.io/c.png ")
    )
    assert job.human is None
    assert job.cloth is None
    assert job.body.cloth_image == "http://x.io/c.png"


def test_message_repr_hides_images_and_callback() -> None:
    """repr() of the message and body never shows images or the callback URL."""
    job = validate_job(_job(callback_url="https://h.example.com/cb?secret=abc"))
    text = repr(job)
    assert HUMAN[:20] not in text
    assert CLOTH[:20] not in text
    assert "secret=abc" not in text


# --- job ids -----------------------------------------------------------------------------


def test_derived_id_is_stable_under_key_order_and_spacing() -> None:
    """The same content in another key order or layout is the same job."""
    forward = json.dumps(_job(metadata={"a": 1, "b": [1, 2]}))
    fields = json.loads(forward)
    backward = json.dumps(dict(reversed(list(fields.items()))), indent=2)
    assert validate_job(forward).job_id == validate_job(backward).job_id
    assert validate_job(forward).job_id == derive_job_id(fields)


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"sku": "2"}},
        {"cloth_image": HUMAN},
        {"priority": 1},
        {"model_name": "kolors-virtual-try-on-v1"},
    ],
)
def test_derived_id_differs_for_different_content(change: dict[str, Any]) -> None:
    """Any change of content (even spelling out a default) is another job."""
    base = _job(metadata={"sku": "1"})
    assert derive_job_id(base) != derive_job_id({**base, **change})


def test_derived_id_is_sha256_of_canonical_json() -> None:
    """The documented recipe: sorted keys, compact separators, UTF-8, job_id left out."""
    import hashlib

    fields = {"b": "é", "a": [1, {"y": None, "x": True}], "job_id": None}
    canonical = '{"a":[1,{"x":true,"y":null}],"b":"é"}'.encode()
    expected = "job-" + hashlib.sha256(canonical).hexdigest()[:32]
    assert derive_job_id(fields) == expected


@pytest.mark.parametrize(
    ("raw", "own"),
    [
        ({"job_id": "ok-1", "x": 1}, True),
        ({"job_id": "bad id", "x": 1}, False),
        ({"job_id": 12, "x": 1}, False),
        ({"job_id": None, "x": 1}, False),
        ({"x": 1}, False),
    ],
)
def test_job_id_of_uses_own_id_only_when_valid(raw: dict[str, Any], own: bool) -> None:
    """A valid own id is used; otherwise the content-derived id, so rejections are stable."""
    expected = raw["job_id"] if own else derive_job_id({"x": 1})
    assert job_id_of(raw) == expected


def test_rejected_job_is_recorded_under_a_stable_id() -> None:
    """An invalid message gets the same derived id each time it is published."""
    raw = {"human_image": HUMAN, "priority": 42}
    first, second = _rejection(raw), _rejection(json.dumps(raw).encode())
    assert first.job_id == second.job_id == derive_job_id(raw)


def test_rejected_job_with_own_valid_id_keeps_it() -> None:
    """A rejection is recorded under the producer's id when that id is valid."""
    assert _rejection({"job_id": "mine", "human_image": HUMAN}).job_id == "mine"


# --- field rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["human_image", "cloth_image"])
def test_missing_image_is_refused(missing: str) -> None:
    """Both images are required."""
    raw = _job()
    del raw[missing]
    problem = _only_problem(raw)
    assert (problem.field, problem.rule) == (missing, "required")
    assert "is required" in problem.message
    assert "http(s) URL" in problem.message


def test_misspelt_model_field_is_refused_by_name() -> None:
    """`model` instead of `model_name` (a classic client defect) is an error, not a default."""
    problem = _only_problem(_job(model="kolors-virtual-try-on-v1-5"))
    assert (problem.field, problem.rule) == ("model", "extra_field")
    assert "did you mean 'model_name'" in problem.message


def test_unknown_field_without_close_match_lists_the_fields() -> None:
    """An unknown field far from any real one is refused with the list of fields."""
    problem = _only_problem(_job(colour="red"))
    assert (problem.field, problem.rule) == ("colour", "extra_field")
    assert "human_image" in problem.message


@pytest.mark.parametrize("name", ["kolors-virtual-try-on-v2", "v1", "KOLORS-VIRTUAL-TRY-ON-V1"])
def test_bad_model_name_is_refused(name: str) -> None:
    """Only the two model names the API knows are accepted, exactly spelt."""
    problem = _only_problem(_job(model_name=name))
    assert (problem.field, problem.rule) == ("model_name", "enum")
    assert "'kolors-virtual-try-on-v1' or 'kolors-virtual-try-on-v1-5'" in problem.message
    assert f"got '{name}'" in problem.message


@pytest.mark.parametrize(
    ("url", "rule", "fragment"),
    [
        ("ftp://files.example.com/a.jpg", "url_scheme", "scheme 'ftp'"),
        ("javascript:alert(1)", "url_scheme", "scheme 'javascript'"),
        ("file:///etc/passwd", "url_scheme", "scheme 'file'"),
        ("http://", "url", "no host"),
        ("https:///path/only.jpg", "url", "no host"),
        ("https://exa mple.com/a.jpg", "url", "spaces or control characters"),
        ("https://example.com:99999/a.jpg", "url", "malformed"),
        ("https://example.com/" + "a" * 9000, "max_length", "at most 8192"),
    ],
    ids=["ftp", "javascript", "file", "no-host", "empty-host", "space", "bad-port", "too-long"],
)
def test_bad_image_urls_are_refused(url: str, rule: str, fragment: str) -> None:
    """Image URLs must be absolute http(s) URLs with a host."""
    problem = _only_problem(_job(cloth_image=url))
    assert (problem.field, problem.rule) == ("cloth_image", rule)
    assert fragment in problem.message


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://hooks.example.com/cb", "url_scheme"),
        ("hooks.example.com/cb", "url"),
        ("https://hooks.example.com/" + "x" * 2100, "max_length"),
    ],
)
def test_bad_callback_urls_are_refused(url: str, rule: str) -> None:
    """The callback URL must be an http(s) URL of at most 2048 characters."""
    problem = _only_problem(_job(callback_url=url))
    assert (problem.field, problem.rule) == ("callback_url", rule)


def test_url_problems_do_not_quote_the_query_string() -> None:
    """A signed URL's query (its credential) never appears in a rejection."""
    rejection = _rejection(_job(human_image="ftp://h.example.com/a.jpg?sig=SECRET123"))
    assert "SECRET123" not in rejection.reason


@pytest.mark.parametrize(
    ("job_id", "rule"),
    [
        ("has space", "pattern"),
        ("slash/inside", "pattern"),
        ("ümlaut", "pattern"),
        ("new\nline", "pattern"),
        ("", "min_length"),
        ("x" * 65, "max_length"),
        (123, "type"),
    ],
)
def test_bad_job_ids_are_refused(job_id: Any, rule: str) -> None:
    """job_id is 1..64 characters of [A-Za-z0-9._:-]: it becomes Kling's external_task_id."""
    problem = _only_problem(_job(job_id=job_id))
    assert (problem.field, problem.rule) == ("job_id", rule)
    assert "1-64 letters, digits" in problem.message


@pytest.mark.parametrize("job_id", ["a", "sku-1234:look.7_A", "x" * 64, "2024-01-01T00:00:00"])
def test_good_job_ids_are_kept(job_id: str) -> None:
    """Ids made of the allowed characters, up to 64 long, are kept as they are."""
    assert validate_job(_job(job_id=job_id)).job_id == job_id


@pytest.mark.parametrize(
    ("priority", "rule"),
    [(-1, "range"), (10, "range"), ("5", "type"), (1.5, "type"), (True, "type"), (None, "type")],
)
def test_bad_priorities_are_refused(priority: Any, rule: str) -> None:
    """priority is an integer from 0 to 9; strings, fractions and booleans are not coerced."""
    problem = _only_problem(_job(priority=priority))
    assert (problem.field, problem.rule) == ("priority", rule)
    assert "integer from 0 to 9" in problem.message


@pytest.mark.parametrize("priority", [0, 9])
def test_priority_bounds_are_accepted(priority: int) -> None:
    """0 and 9 are both valid priorities."""
    assert validate_job(_job(priority=priority)).message.priority == priority


@pytest.mark.parametrize(("priority", "taken"), [(1.0, 1), (9.0, 9), (0.0, 0)])
def test_whole_numbers_written_as_floats_are_integers(priority: float, taken: int) -> None:
    """`1.0` is an integer in JSON Schema (schemathesis sent it): taken as 1, not refused."""
    job = validate_job(json.dumps(_job(priority=priority)))
    assert job.message.priority == taken and isinstance(job.message.priority, int)


def test_metadata_over_16_kb_is_refused() -> None:
    """Metadata travels in every event, so it is limited to 16 KB of compact JSON."""
    problem = _only_problem(_job(metadata={"blob": "x" * 16_400}))
    assert (problem.field, problem.rule) == ("metadata", "max_bytes")
    assert "16 KB" in problem.message


def test_metadata_of_exactly_16_kb_is_accepted() -> None:
    """The metadata limit is inclusive."""
    overhead = len('{"blob":""}')
    metadata = {"blob": "x" * (16 * 1024 - overhead)}
    assert validate_job(_job(metadata=metadata)).message.metadata == metadata


@pytest.mark.parametrize("metadata", [[1, 2], "sku", 5, None])
def test_metadata_must_be_an_object(metadata: Any) -> None:
    """metadata is a JSON object, not any JSON value."""
    problem = _only_problem(_job(metadata=metadata))
    assert (problem.field, problem.rule) == ("metadata", "type")


@pytest.mark.parametrize(("value", "got"), [(42, "a number"), (None, "null"), ([], "an array")])
def test_image_of_wrong_type_is_refused(value: Any, got: str) -> None:
    """Images are strings; the rejection names the JSON type received."""
    problem = _only_problem(_job(human_image=value))
    assert (problem.field, problem.rule) == ("human_image", "type")
    assert f"got {got}" in problem.message


@pytest.mark.parametrize("value", ["", "   ", "data:image/png;base64,"])
def test_empty_image_is_refused(value: str) -> None:
    """An empty image field is refused as empty."""
    problem = _only_problem(_job(human_image=value))
    assert (problem.field, problem.rule) == ("human_image", "empty")


def test_all_problems_are_reported_together() -> None:
    """One rejection lists every problem found, so one fix round is enough."""
    rejection = _rejection(
        {"model": "x", "model_name": "v9", "human_image": "ftp://a/b", "priority": 99}
    )
    assert {(p.field, p.rule) for p in rejection.problems} == {
        ("model", "extra_field"),
        ("model_name", "enum"),
        ("human_image", "url_scheme"),
        ("cloth_image", "required"),
        ("priority", "range"),
    }
    assert rejection.reason == "; ".join(str(p) for p in rejection.problems)


def test_job_rejected_carries_code_reason_and_id() -> None:
    """JobRejected's str is its reason, its code is invalid_job."""
    rejection = _rejection({"job_id": "j-9", "human_image": HUMAN})
    assert rejection.code == "invalid_job"
    assert str(rejection) == rejection.reason
    assert rejection.reason == (
        "cloth_image: is required; give a string: an http(s) URL or the JPEG/PNG file as Base64"
    )
    assert rejection.job_id == "j-9"


def test_problem_str_is_field_then_message() -> None:
    """A Problem reads 'field: message'."""
    assert str(Problem("human_image", "min_size", "image is 1x1 px")) == (
        "human_image: image is 1x1 px"
    )


def test_many_unknown_fields_are_capped() -> None:
    """Thousands of stray keys do not produce a reason longer than the message."""
    rejection = _rejection(_job(**{f"k{i}": i for i in range(500)}))
    assert len(rejection.problems) == 21
    assert rejection.problems[-1].rule == "too_many_problems"


# --- messages that are not job objects -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rule", "fragment"),
    [
        (b"not json at all", "json", "not valid JSON"),
        (b"", "json", "empty"),
        (b'{"human_image": ', "json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "encoding", "UTF-8"),
        (b"[1, 2, 3]", "type", "got an array"),
        (b"null", "type", "got null"),
        (b"42", "type", "got a number"),
        (b'"a string"', "type", "got a string"),
        (b'{"priority": NaN}', "json", "NaN"),
        (b'{"a": 1, "a": 2}', "duplicate_key", "'a' twice"),
        (b"[" * 100_000, "json", "nested too deeply"),
        (b'{"priority": 1' + b"0" * 5000 + b"}", "json", "too long"),
        ([1, 2], "type", "got an array"),
        (None, "type", "got null"),
        (3.5, "type", "got a number"),
    ],
    ids=[
        "text",
        "empty",
        "cut",
        "not-utf8",
        "array",
        "null",
        "number",
        "string",
        "nan",
        "duplicate",
        "deep",
        "huge-int",
        "py-list",
        "py-none",
        "py-float",
    ],
)
def test_messages_that_are_not_job_objects_are_refused(raw: Any, rule: str, fragment: str) -> None:
    """Anything that is not a JSON object is refused as a whole, with no job id."""
    rejection = _rejection(raw)
    (problem,) = rejection.problems
    assert (problem.field, problem.rule) == ("message", rule)
    assert fragment in problem.message
    assert rejection.job_id is None


def test_oversized_message_is_refused_unparsed() -> None:
    """A message over 32 MB is refused before it is parsed."""
    problem = _only_problem(b"{" + b" " * (32 * 1024 * 1024) + b"}")
    assert (problem.field, problem.rule) == ("message", "max_bytes")


# --- options and schema --------------------------------------------------------------------


def test_options_come_from_settings() -> None:
    """ValidationOptions reads preflight switches and the one network timeout from Settings."""
    settings = Settings(
        url_preflight=True,
        preflight_allow_private=True,
        http_connect_timeout=2.0,
        http_read_timeout=7.0,
    )
    options = ValidationOptions.from_settings(settings)
    assert options == ValidationOptions(
        url_preflight=True, allow_private_urls=True, timeout=(2.0, 7.0)
    )


def test_schema_describes_every_field() -> None:
    """The published schema has an id, a title, closed properties and a description per field."""
    schema = job_json_schema()
    assert schema["$id"].startswith("urn:kolors-tryon:")
    assert schema["title"] == "Kolors try-on job message"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"human_image", "cloth_image"}
    assert set(schema["properties"]) == set(JobMessage.model_fields)
    for name, prop in schema["properties"].items():
        assert len(prop.get("description", "")) > 20, name
    json.dumps(schema)  # it is plain JSON


def test_schema_enumerates_model_names_and_garments() -> None:
    """Model names and garments are closed lists in the schema."""
    text = json.dumps(job_json_schema())
    for value in ("kolors-virtual-try-on-v1", "kolors-virtual-try-on-v1-5", "top", "dress"):
        assert f'"{value}"' in text


def _with_int_key() -> dict[Any, Any]:
    raw: dict[Any, Any] = _job()
    raw[1] = "x"
    return raw


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (_with_int_key(), "[1]", "not a string key"),
        (_job(human_image=HUMAN.encode()), "human_image", "got bytes"),
        (_job(metadata={"a": {1, 2}}), "metadata.a", "must be a JSON value"),
        (_job(metadata={"a": float("nan")}), "metadata", "NaN"),
    ],
    ids=["int-key", "bytes-image", "set-in-metadata", "nan-in-metadata"],
)
def test_python_only_values_are_refused_as_types(raw: Any, field: str, fragment: str) -> None:
    """Mappings built in Python with non-JSON values are refused, never crash."""
    problem = _only_problem(raw)
    assert (problem.field, problem.rule) == (field, "type")
    assert fragment in problem.message


def _nested(depth: int) -> str:
    """JSON text of `depth` nested arrays."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [31, 200, 900], ids=["just-over", "deep", "near-python-limit"])
def test_nesting_past_the_limit_is_rejected_naming_the_field(depth: int) -> None:
    """Metadata nested past MAX_JSON_DEPTH is one max_depth problem on `metadata`, recorded
    under the message's id, and its content digest does not crash either."""
    text = (
        json.dumps(_job(job_id="deep-1")).removesuffix("}")
        + f', "metadata": {{"a": {_nested(depth)}}}}}'
    )
    rejection = _rejection(text.encode())
    assert rejection.job_id == "deep-1"
    assert [(p.field, p.rule) for p in rejection.problems] == [("metadata", "max_depth")]
    assert f"at most {defaults.MAX_JSON_DEPTH}" in rejection.reason
    assert len(content_digest(text.encode())) == 64


def test_nesting_at_the_limit_is_accepted() -> None:
    """The message, metadata and 30 more levels: exactly MAX_JSON_DEPTH, accepted."""
    depth = defaults.MAX_JSON_DEPTH - 2
    text = json.dumps(_job()).removesuffix("}") + f', "metadata": {{"a": {_nested(depth)}}}}}'
    assert validate_job(text.encode()).message.metadata["a"] == json.loads(_nested(depth))


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ('{"note": "a\\ud800b"}', "metadata.note"),
        ('{"\\udc00": 1}', "metadata"),
        ('{"list": ["ok", "\\udfff"]}', "metadata.list[1]"),
    ],
    ids=["value", "key", "in-a-list"],
)
def test_lone_surrogates_are_refused_naming_the_field(metadata: str, field: str) -> None:
    """A lone surrogate (a valid JSON escape, no character) is refused with rule `encoding`."""
    text = json.dumps(_job(job_id="lone-1")).removesuffix("}") + f', "metadata": {metadata}}}'
    problem = _only_problem(text.encode())
    assert (problem.field, problem.rule) == (field, "encoding")
    assert "lone UTF-16 surrogate" in problem.message


def test_surrogate_pairs_are_characters_and_accepted() -> None:
    """An escaped surrogate pair is one character (an emoji) and is accepted as such."""
    text = json.dumps(_job()).removesuffix("}") + ', "metadata": {"note": "\\ud83d\\ude00"}}'
    assert validate_job(text.encode()).message.metadata == {"note": "\U0001f600"}
