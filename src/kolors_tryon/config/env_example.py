"""`.env.example` and the configuration reference, written from Settings itself, so that
neither can miss or keep a variable.

`tryon config env-example > .env.example` and
`tryon config reference > docs/configuration.md` regenerate them; unit tests fail when a
file in the repository differs from what this module writes.
"""

from __future__ import annotations

from pydantic.fields import FieldInfo

from kolors_tryon.config.settings import ENV_PREFIX, Settings

HEADER = """\
# kolors-tryon settings. Copy to .env (or set them in the environment); an empty value
# means the default. Written by `tryon config env-example` from the Settings fields: edit
# the descriptions in src/kolors_tryon/config/settings.py, not here.
"""


def _shown_default(info: FieldInfo) -> str:
    """The default as an operator would write it ('none' when there is none)."""
    value = info.get_default(call_default_factory=True)
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def missing_descriptions() -> list[str]:
    """Settings fields without a description (each variable must say what it does)."""
    return [name for name, info in Settings.model_fields.items() if not info.description]


def render_env_example() -> str:
    """Every TRYON_ variable with its description and default, in the order of Settings."""
    blocks = [HEADER]
    for name, info in Settings.model_fields.items():
        description = info.description or ""
        blocks.append(
            f"# {description} (default: {_shown_default(info)})\n{ENV_PREFIX}{name.upper()}=\n"
        )
    return "\n".join(blocks)


REFERENCE_HEADER = """\
# Configuration reference

Every setting is an environment variable with the prefix `TRYON_` (or a line of a `.env`
file in the working directory); an empty value means the default. A wrong value stops
start-up with a message naming the variable. Secrets are never printed.

This page is written by `tryon config reference` from the fields of
`kolors_tryon.config.Settings` (edit the descriptions in
`src/kolors_tryon/config/settings.py`, not here); a unit test keeps it current. The
numbers behind the defaults, with their reasons, are in
`src/kolors_tryon/config/defaults.py`.

| variable | meaning | default |
|---|---|---|
"""


def _cell(text: str) -> str:
    """Table-safe text: a pipe would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_configuration_reference() -> str:
    """The Markdown reference of every TRYON_ variable, in the order of Settings."""
    rows = [REFERENCE_HEADER]
    for name, info in Settings.model_fields.items():
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        default = _shown_default(info)
        shown = "none" if default == "none" else f"`{default}`"
        rows.append(f"| {variable} | {_cell(info.description or '')} | {_cell(shown)} |\n")
    return "".join(rows)
