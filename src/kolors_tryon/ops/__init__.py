"""Operating the service: health checks, logs, the metrics endpoint, the account watch.

The layer of `pipeline/` (it reads the store, the Kling client and the broker, and
imports no Celery): `tryon health` (cli), `tryon web` and the worker's main process
all use it.

- `ops.health`: broker, store and Kling credentials (and the account's units) checked.
- `ops.logs`: one handler for every process: text or JSON lines, redacted.
- `ops.exposition`: the `/metrics` text, with the gauges derived from the store.
- `ops.journal`: one log line, metric and (when worth it) Sentry event per state change.
- `ops.account`: the account's remaining units, read now and then, with a warning.
"""
