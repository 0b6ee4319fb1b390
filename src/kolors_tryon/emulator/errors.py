"""Business errors as the emulator answers them: HTTP status, business code, message.

The table is KLING_API.md's. Handlers raise :class:`ApiError`; the server turns it into
the usual envelope with ``data: null``. Keeping status and code together in one place
means a handler can never answer, say, code 1303 with the wrong HTTP status.
"""

from __future__ import annotations

#: HTTP status for each business code (KLING_API.md, "Errors").
HTTP_STATUS: dict[int, int] = {
    1000: 401,
    1001: 401,
    1002: 401,
    1003: 401,
    1004: 401,
    1100: 429,
    1101: 429,
    1102: 429,
    1103: 403,
    1200: 400,
    1201: 400,
    1202: 404,
    1203: 404,
    1300: 400,
    1301: 400,
    1302: 429,
    1303: 429,
    1304: 429,
    5000: 500,
    5001: 503,
    5002: 504,
}

#: Default message per code; the docs name the meaning, not the exact wording.
DEFAULT_MESSAGE: dict[int, str] = {
    1000: "Authentication failed",
    1001: "Authorization is empty",
    1002: "Authorization is invalid",
    1003: "Token is not yet valid",
    1004: "Token has expired",
    1100: "Account exception",
    1101: "Account in arrears",
    1102: "Resource pack exhausted or expired",
    1103: "No permission for this API or model",
    1200: "Invalid request parameters",
    1201: "Invalid parameter",
    1202: "Invalid request method",
    1203: "Requested resource does not exist",
    1302: "Requests too fast, please slow down",
    1303: "Concurrency over the resource pack limit",
    5000: "Server internal error",
}


class ApiError(Exception):
    """A refusal that the emulator answers with the error envelope.

    Attributes:
        code: Business code from the table.
        message: Human-readable reason; for 1201 it names the field and the rule.
        status: HTTP status that goes with ``code``.
        headers: Extra response headers (``Retry-After`` for 1302).
    """

    def __init__(
        self, code: int, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.code = code
        self.message = message if message is not None else DEFAULT_MESSAGE.get(code, "Error")
        self.status = HTTP_STATUS.get(code, 500)
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.message}")
