"""Answers that carry job records, shared by the routes that send them."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["RecordResponse"]


class RecordResponse(JSONResponse):
    """Job records as JSON, readable even if one holds a lone surrogate: escaped then.

    Intake refuses such text since it can hold none (`validate_job`, rule ``encoding``),
    but a record stored before that would otherwise answer 500 on every read, for ever.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")
