"""Scrub secrets and people's photos out of text before it reaches a log, an event or Sentry.

Anything that leaves the process as text (log lines, exception messages, error reports)
passes through `redact` first, because an API message or a URL can quote back what we
sent: bearer tokens, JWTs, reseller keys, Base64 images, and signed image URLs whose query
string is the credential.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

# Userinfo in a URL ("https://user:pass@host") is a password in plain sight.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]*@")
# A signed URL's query string is its credential; keep scheme, host and path for debugging.
_URL_QUERY = re.compile(r"(?i)\b((?:https?|wss?)://[^\s?#\"'<>]+)\?[^\s#\"'<>]*")
# The value after "Bearer", unless it is a plain lowercase word: our own messages say
# "(Bearer scheme)" or 'Bearer realm="tryon"', and no real token is one short word.
# Brackets end a value, so a marker already put in ("[redacted]") is left alone.
_BEARER = re.compile(
    r"\b([Bb][Ee][Aa][Rr][Ee][Rr])\s+"
    r"(?![a-z]{1,24}(?![^\s,;\"'()<>\[\]=]))"
    r"[^\s,;\"'()<>\[\]]+"
)
# Three base64url segments starting with the encoding of '{"' - the shape of every JWT.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Reseller keys look like "sk-..." and may be quoted back without the Bearer prefix.
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
# At least one character of payload: help texts show the form ("data:image/png;base64,
# <data>"), which is no one's photo.
_DATA_URI = re.compile(r"(?i)data:[a-z0-9.+/-]*;base64,[A-Za-z0-9+/=_-]+")
# The credential parameters of signed URLs (S3, GCS, CloudFront, Azure SAS, generic
# tokens), also when the query string travels alone, without its URL: Sentry's HTTP
# breadcrumbs keep it apart in `http.query`.
_SIGNED_PARAM = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])"
    r"(x-amz-[a-z0-9-]+|x-goog-[a-z0-9-]+|signature|sig|token|access_token|api_key|apikey"
    r"|key-pair-id|policy|expires|credential|se|sp|sv|sr|skoid|sktid|skt|ske|sks|skv)"
    r"=[^&\s\"'<>]+"
)
# 100+ characters of the Base64 alphabet: long enough to spare ids, hashes and paths,
# short enough to catch any image (the smallest valid one is thousands of characters).
# A run may be wrapped (MIME wraps at 76 columns), or JSON-escaped (`\/`, `\n`).
_BASE64_RUN = re.compile(r"(?:[A-Za-z0-9+/_-]|\\/|\\[nr]|\r?\n){100,}={0,2}")


def redact(text: str) -> str:
    """Return `text` with tokens, keys, Base64 runs and URL query strings replaced.

    Args:
        text: Any string that may contain secrets, e.g. an API error message.

    Returns:
        The same text with each secret replaced by a short marker; harmless text is
        left untouched so the message stays useful.
    """
    if not text:
        return text
    text = _DATA_URI.sub("data:[base64 redacted]", text)
    text = _URL_USERINFO.sub(r"\1[redacted]@", text)
    text = _URL_QUERY.sub(r"\1?[redacted]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    text = _JWT.sub("[jwt redacted]", text)
    text = _SK_KEY.sub("sk-[redacted]", text)
    text = _SIGNED_PARAM.sub(r"\1=[redacted]", text)
    return _BASE64_RUN.sub(lambda m: f"[base64 {len(m.group(0))} chars redacted]", text)
