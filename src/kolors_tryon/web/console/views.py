"""Rendering of the console's pages: the Jinja2 environment and the overview's chart.

Templates ship inside the package (`templates/`, package data): a wheel and a fresh clone
render the same pages. Autoescaping is on for every template: job ids, metadata and error
messages come from producers and are shown as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

__all__ = ["STATE_COLOURS", "page", "state_chart"]

# One colour per ended state in the chart and the badges (the CSS uses the same).
STATE_COLOURS: Final = {"succeeded": "#2e7d32", "failed": "#c62828", "rejected": "#ef6c00"}

_ENV: Final = Environment(
    loader=PackageLoader("kolors_tryon.web.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(text: str | None) -> str:
    """An ISO time as "2026-12-08 04:12:42" (UTC), or a dash."""
    if not text:
        return "-"
    return text.replace("T", " ").removesuffix("Z")[:19]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (nothing ended in the last hour)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_ENV.filters["when"] = _when
_ENV.filters["duration"] = _duration


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template `name` rendered with `context`, as a response nobody caches."""
    html = _ENV.get_template(name).render(**context)
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            # Pages and images of this origin only; the slider's script is a file of ours.
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def state_chart(hourly: Sequence[Mapping[str, int]], now: float) -> str:
    """An inline SVG of ended jobs per hour over the last 24, stacked by state.

    Built here rather than in a template so that its arithmetic is plain Python; every
    value in it is a number or one of our state names, so it is safe as markup.
    """
    width, height, bar = 480, 120, 20
    peak = max([1, *(sum(hour.values()) for hour in hourly)])
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 16}" role="img" '
        f'aria-label="jobs ended per hour, last 24 hours">'
    ]
    for index, hour in enumerate(hourly):
        y = float(height)
        for state, colour in STATE_COLOURS.items():
            count = int(hour.get(state, 0))
            if not count:
                continue
            h = count / peak * (height - 4)
            y -= h
            parts.append(
                f'<rect x="{index * bar + 1}" y="{y:.1f}" width="{bar - 2}" height="{h:.1f}" '
                f'fill="{colour}"><title>{count} {state}</title></rect>'
            )
    start = datetime.fromtimestamp(now - 24 * 3600, UTC).strftime("%H:%M")
    parts.append(f'<text x="0" y="{height + 14}" font-size="11">{start}</text>')
    parts.append(f'<text x="{width}" y="{height + 14}" font-size="11" text-anchor="end">now</text>')
    parts.append(f'<text x="2" y="11" font-size="11">{peak}/h</text>')
    parts.append("</svg>")
    return "".join(parts)
