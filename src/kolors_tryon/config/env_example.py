"""`.env.example`, written from Settings itself, so that it can never miss or keep a variable.

`tryon config env-example > .env.example` regenerates it; a unit test fails when the
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
