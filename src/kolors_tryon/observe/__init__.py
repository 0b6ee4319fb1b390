"""What every layer may report about itself: metrics helpers and the job context of logs.

The bottom of the stack beside `config/` (it imports only `config` and
prometheus_client), so that the Kling client, the pipeline (webhooks), the tasks and the
web app all count into the same metric objects and log with the same job fields:

- `observe.metrics`: the `tryon_*` Prometheus metrics and one small function per thing
  worth counting (`job_moved`, `api_call`, `webhook_delivered`, `callback_received`...).
- `observe.context`: the job a thread is working on (`job_context`), read by log
  formatters and the Sentry scrubber so that every line and event carries its job_id.
- `observe.multiproc`: prometheus_client's multiprocess mode for Celery's prefork pool.

Serving and scraping (the store-derived gauges, the HTTP endpoint) sit higher, in `ops/`.
"""
