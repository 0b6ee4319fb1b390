"""The one exception the low-level checks (URL form, image bytes, URL preflight) raise.

Each check knows *what* is wrong but not *which field* of the job it is looking at, so it
raises `CheckFailed(rule, message)` and `validation.validate_job` turns it into a
`Problem` that names the field. Messages never quote image data or full URLs: they reach
logs, events and the job record (DESIGN.md invariant 6).
"""

from __future__ import annotations

from kolors_tryon.errors import TryonError

__all__ = ["CheckFailed"]


class CheckFailed(TryonError):
    """A value broke one rule.

    Attributes:
        rule: A short, stable rule name (e.g. ``"min_size"``) that programs can branch on.
        message: What is wrong and what is accepted, in words a producer can act on.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rule={self.rule!r}, message={self.message!r})"
