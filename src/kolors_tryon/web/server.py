"""Run the app with uvicorn, as `tryon web` does."""

from __future__ import annotations

import logging

import uvicorn

from kolors_tryon.config import Settings, defaults
from kolors_tryon.ops.logs import configure_logging
from kolors_tryon.web.app import create_web_app

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    proxy_headers: bool = True,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve `tryon web` until SIGINT/SIGTERM (uvicorn's graceful shutdown).

    Args:
        settings: The service's configuration.
        host: Interface to bind (``0.0.0.0`` in a container).
        port: TCP port.
        proxy_headers: Trust X-Forwarded-Proto/For from `forwarded_allow_ips`
            (a TLS-terminating reverse proxy).
        forwarded_allow_ips: Comma-separated proxy addresses to trust, ``*`` for any;
            uvicorn's default (127.0.0.1, or $FORWARDED_ALLOW_IPS) when None.
    """
    # One handler, text or JSON, redacted (ops.logs); uvicorn's loggers propagate to it.
    configure_logging(settings)
    if not settings.api_keys:
        log.warning("TRYON_API_KEYS is not set: HTTP intake is off (/v1/* answer 503)")
    if settings.callback_secret is None:
        log.info(
            "TRYON_CALLBACK_SECRET is not set: callback tokens use the secret generated once "
            "and kept in the store (set it to rotate it: see docs/operations.md)"
        )
    uvicorn.run(
        create_web_app(settings),
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=settings.log_level.lower(),
        server_header=False,
        access_log=False,  # ours (AccessLogMiddleware) masks callback tokens
        log_config=None,
        # Requests still running after SIGTERM are closed after this, instead of holding
        # the stop for as long as a slow one lasts.
        timeout_graceful_shutdown=defaults.WEB_SHUTDOWN_GRACE,
    )
