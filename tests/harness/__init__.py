"""Test harness: real worker processes, fresh RabbitMQ names and fresh PostgreSQL databases.

Nothing here stands in for our own components: workers are started as a user starts
them (`tryon worker`), talk to RabbitMQ and PostgreSQL (`TRYON_TEST_RABBITMQ_URL`,
`TRYON_TEST_POSTGRES_URL`, the local services by default), and reach the Kling emulator
over HTTP. One module per concern; every name tests use is re-exported here, so that
`from harness import X` is the one way in.
"""

from __future__ import annotations

from harness.clocks import SettableClock, runtime_with_clock
from harness.compose import ComposeRun, ServiceProcess, load_compose, read_dockerfile
from harness.deployment import (
    Deployment,
    base_env,
    emulator_env,
    rabbit_deployment_on,
    rabbit_stack,
    running_emulator,
)
from harness.env import (
    FAST_ENV,
    TEST_ACCESS_KEY,
    TEST_API_KEY,
    TEST_SECRET_KEY,
    clean_env,
    free_port,
    postgres_url,
    rabbitmq_url,
    tryon_executable,
)
from harness.faults import FaultRun, assert_one_task_per_job, figures, states
from harness.images import (
    PNG_IEND,
    PNG_SIGNATURE,
    png_chunk,
    png_claiming,
    png_inflating,
    png_padded,
)
from harness.interrupts import cleanup_on_signal
from harness.postgres import fresh_database
from harness.processes import WorkerProcess, terminate
from harness.proxy import NO_FAULT, Fault, TcpProxy
from harness.rabbit import (
    EventRecorder,
    dead_letters,
    delete_topology,
    jobs_waiting,
    own_vhost,
    publish_raw,
    queue_messages,
)
from harness.s3 import S3Server, running_s3, sha256_hex
from harness.samples import SAMPLES, publish_jobs, sample_b64
from harness.sampling import ApiSample, ApiSampler
from harness.scrape import Samples, scrape, total, value
from harness.servers import SIGNATURE, ImageHost, RecordingSentry, SignedResults
from harness.starvation import cpu_starved, process_tree
from harness.waiting import concurrently, terminal_records, wait_all_terminal, wait_until
from harness.webhooks import Received, WebhookReceiver

# Grouped by concern (one module each), sorted within a group.
__all__ = [  # noqa: RUF022
    # A clock the test moves: the store's time in orchestration specs (clocks.py)
    "SettableClock",
    "runtime_with_clock",
    # docker-compose.yml and the Dockerfile run as local processes (compose.py)
    "ComposeRun",
    "ServiceProcess",
    "load_compose",
    "read_dockerfile",
    # Deployments: their env, workers and `tryon` command (deployment.py)
    "Deployment",
    "base_env",
    "emulator_env",
    "rabbit_deployment_on",
    "rabbit_stack",
    "running_emulator",
    # Environment: service URLs, free ports, the emulator's keys, fast settings (env.py)
    "FAST_ENV",
    "TEST_ACCESS_KEY",
    "TEST_API_KEY",
    "TEST_SECRET_KEY",
    "clean_env",
    "free_port",
    "postgres_url",
    "rabbitmq_url",
    "tryon_executable",
    # Fault scaffold: scenario, jobs, counts at the paid API (faults.py)
    "FaultRun",
    "assert_one_task_per_job",
    "figures",
    "states",
    # Clean-ups a SIGTERM/SIGINT of the session runs at once (interrupts.py)
    "cleanup_on_signal",
    # Hand-built PNGs (images.py)
    "PNG_IEND",
    "PNG_SIGNATURE",
    "png_chunk",
    "png_claiming",
    "png_inflating",
    "png_padded",
    # PostgreSQL: a fresh database per test (postgres.py)
    "fresh_database",
    # Worker processes: started, killed, stopped (processes.py)
    "WorkerProcess",
    "terminate",
    # A TCP fault proxy: cut, refuse, delay, drip or stall one peer (proxy.py)
    "NO_FAULT",
    "Fault",
    "TcpProxy",
    # A loaded machine on purpose: a process tree on one busy core (starvation.py)
    "cpu_starved",
    "process_tree",
    # RabbitMQ: plain publishing, dead letters, events, clean-up (rabbit.py)
    "EventRecorder",
    "dead_letters",
    "delete_topology",
    "jobs_waiting",
    "own_vhost",
    "publish_raw",
    "queue_messages",
    # An S3-compatible object store over HTTP: moto's server (s3.py)
    "S3Server",
    "running_s3",
    "sha256_hex",
    # The paid API over time: creates and tasks in flight, sampled (sampling.py)
    "ApiSample",
    "ApiSampler",
    # Sample photos and valid jobs made of them (samples.py)
    "SAMPLES",
    "publish_jobs",
    "sample_b64",
    # Scraping /metrics as Prometheus does (scrape.py)
    "Samples",
    "scrape",
    "total",
    "value",
    # Stand-ins for services outside ours: Sentry, signed result URLs, an image host (servers.py)
    "SIGNATURE",
    "ImageHost",
    "RecordingSentry",
    "SignedResults",
    # Waiting: polls with a deadline, threads started together (waiting.py)
    "concurrently",
    "terminal_records",
    "wait_all_terminal",
    "wait_until",
    # A producer's webhook receiver: real HTTP, steered by the test (webhooks.py)
    "Received",
    "WebhookReceiver",
]
