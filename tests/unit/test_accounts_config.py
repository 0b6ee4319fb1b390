"""TRYON_KLING_ACCOUNTS: the pool read from JSON or a file, its errors, and the single
account of today as a pool of one named `default`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.config.accounts import AccountsError, account_pool, parse_accounts

SECRET = "sk-do-not-print-me"


def entry(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "a",
        "base_url": "https://api.example.com/kling",
        "api_key": SECRET,
        "max_in_flight": 5,
    }
    base.update(fields)
    return base


def test_the_single_account_variables_are_a_pool_of_one_named_default() -> None:
    """No TRYON_KLING_ACCOUNTS: one `default` account with today's URL, key and limit."""
    settings = Settings.model_validate(
        {"kling_api_key": SECRET, "kling_base_url": "https://r.example/k", "max_in_flight": 7}
    )
    (account,) = account_pool(settings)
    assert (account.name, account.base_url, account.max_in_flight) == (
        "default",
        "https://r.example/k",
        7,
    )
    assert account.api_key is not None and account.api_key.get_secret_value() == SECRET


def test_a_pool_from_inline_json_and_from_yaml_and_json_files(tmp_path: Path) -> None:
    """The variable holds JSON, or the path of a YAML or JSON file; every field is read."""
    entries = [
        entry(weight=2, models=["kolors-virtual-try-on-v1-5"], daily_units=100),
        entry(name="b", api_key=None, access_key="ak", secret_key="sk", max_in_flight=3),
    ]
    inline = parse_accounts(json.dumps(entries))
    as_json = tmp_path / "pool.json"
    as_json.write_text(json.dumps(entries))
    as_yaml = tmp_path / "pool.yaml"
    as_yaml.write_text(
        "- name: a\n  base_url: https://api.example.com/kling\n  api_key: sk-x\n"
        "  max_in_flight: 5\n  weight: 2\n  models: [kolors-virtual-try-on-v1-5]\n"
        "  daily_units: 100\n"
        "- {name: b, base_url: 'https://api.example.com/kling', access_key: ak,"
        " secret_key: sk, max_in_flight: 3}\n"
    )
    for pool in (inline, parse_accounts(str(as_json)), parse_accounts(str(as_yaml))):
        assert [(a.name, a.max_in_flight, a.weight) for a in pool] == [("a", 5, 2), ("b", 3, 1)]
        assert pool[0].models == ("kolors-virtual-try-on-v1-5",) and pool[0].daily_units == 100
        assert not pool[0].runs("kolors-virtual-try-on-v1") and pool[1].runs(None)
    settings = Settings.model_validate({"kling_accounts": str(as_json)})
    assert not settings.sandbox and [a.name for a in account_pool(settings)] == ["a", "b"]


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ([entry(max_in_flight=0)], "account 'a', field max_in_flight"),
        ([entry(name="Bad Name")], "account 'Bad Name', field name"),
        ([entry(api_key=None)], "account 'a', field credentials: needs credentials"),
        ([entry(access_key="ak", secret_key="sk")], "account 'a', field credentials: set either"),
        ([entry(api_key=None, access_key="ak")], "access_key and secret_key must be set together"),
        ([entry(callback_secrets=["nope"])], "callback_secrets must start with whsec_"),
        ([entry(colour="red")], "account 'a', field colour: Extra inputs"),
        ([entry(), entry()], "account names used twice: ['a']"),
        ([{"base_url": "x"}], "account #1"),
        ([], "non-empty list"),
    ],
)
def test_a_wrong_entry_names_the_account_and_the_field(
    entries: list[dict[str, object]], says: str
) -> None:
    """Each mistake is one line naming the account and its field; no secret is shown."""
    with pytest.raises(AccountsError) as raised:
        parse_accounts(json.dumps(entries))
    assert says in str(raised.value)
    assert SECRET not in str(raised.value)


def test_start_up_stops_on_a_wrong_pool_without_printing_secrets() -> None:
    """load_settings turns the pool's error into the configuration error, secret-free."""
    raw = json.dumps([entry(max_in_flight=-1)])
    with pytest.raises(SettingsError) as raised:
        load_settings(kling_accounts=raw)
    assert "account 'a', field max_in_flight" in str(raised.value)
    assert SECRET not in str(raised.value)
    bad_key = json.dumps([entry(api_key=12)])
    with pytest.raises(SettingsError) as raised:
        load_settings(kling_accounts=bad_key)
    assert "field api_key" in str(raised.value) and "12" not in str(raised.value)


def test_a_missing_file_or_bad_json_is_named() -> None:
    """Neither JSON nor a readable file, or JSON that does not parse: said so."""
    with pytest.raises(AccountsError, match="neither JSON nor a readable file"):
        parse_accounts("/no/such/pool.yaml")
    with pytest.raises(AccountsError, match="not valid JSON"):
        parse_accounts("[{")
