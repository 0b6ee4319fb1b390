"""Every default number of the service, each with the reason for its value.

One place, as openai-python keeps its `_constants.py`: Settings take their defaults from
here, and so do the parts that can be used without Settings (the Kling client, the job
validation, the preflight). The README's retry budget is checked against these numbers
(tests/unit/test_readme_budget.py).

Not here: the API's own rules (10 MB, 300 px, the model names: `jobs/`, from
KLING_API.md) and the limits of the job contract (id length, metadata size:
`jobs/models.py`), which are facts of the contract rather than choices of ours.
"""

from __future__ import annotations

from typing import Final

# --- network: every call has an explicit (connect, read) timeout ----------------------
# A healthy API accepts a TCP connection in well under a second; 5 s rides out a slow
# DNS answer or a SYN retransmit without holding a worker for long on a dead host.
HTTP_CONNECT_TIMEOUT: Final = 5.0
# A create uploads two images of up to 10 MB as Base64 and waits for the answer; 30 s
# covers that on a modest uplink, and a longer silence is treated as ambiguous anyway.
HTTP_READ_TIMEOUT: Final = 30.0
# The pair every network call uses (Kling client, URL preflight, result downloads).
HTTP_TIMEOUT: Final = (HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT)
# Quick attempts of a read-only call (query, list) inside one task run: enough to ride
# out a dropped connection, few enough that a real outage goes to the queue's retries.
HTTP_ATTEMPTS: Final = 3
# First wait between those quick attempts (doubled each time, jittered): short, because
# they block a worker thread; the long waits belong to the queue.
READ_BACKOFF_BASE: Final = 0.25
# A Retry-After (or a quick-retry wait) longer than this is not waited out inside a task
# run: the error goes up so that the task is rescheduled instead of blocking a thread.
MAX_RETRY_AFTER_IN_TASK: Final = 5.0
# Pooled connections per host: one per worker thread, without opening new sockets.
HTTP_POOL_SIZE: Final = 32
# The whole-call deadline of every outbound call (Kling, URL preflight with its
# redirects, one result download): a peer that drips a byte at a time resets a read
# timeout at every byte and held calls for ever, so each call also ends by this total
# (config/http_deadline.py). It is the sum of the pair above: what the timeouts
# promised for a silent peer now holds for a slow one, and every window computed from
# the pair (a submit run's attempt window, the fence of a claim) stays true. Calls
# given other timeouts (Settings) get their sum the same way (`Settings.http_deadline`).
HTTP_DEADLINE: Final = HTTP_CONNECT_TIMEOUT + HTTP_READ_TIMEOUT

# --- the Kling account -----------------------------------------------------------------
# The JWT lifetime of Kling's documented example (30 minutes); longer is unconfirmed.
KLING_JWT_LIFETIME: Final = 1800
# Re-mint a JWT when fewer seconds than this remain: clocks drift and requests queue.
KLING_JWT_RENEW_MARGIN: Final = 300
# The try-on concurrency of a new Kling account; set it to what the account has.
MAX_IN_FLIGHT: Final = 5

# --- retry policy across the queue (the retry budget) ---------------------------------
# First wait after a retryable create failure (5000/5001/5002, 1302, network error).
RETRY_BACKOFF_BASE: Final = 2.0
# The longest wait between create retries: five minutes, so a long outage is retried
# about a dozen times an hour instead of hammering the API or going silent.
RETRY_BACKOFF_MAX: Final = 300.0
# Retries of a create before the job fails: with the backoff above, about an hour of an
# API that keeps failing, then the job fails with the last reason.
SUBMIT_MAX_RETRIES: Final = 20
# First wait after 1303 (the account's slots are busy); the API asks for at least 1 s.
BUSY_BACKOFF_BASE: Final = 1.0
# The longest wait after 1303: a slot frees within a minute at typical task lengths.
BUSY_BACKOFF_CAP: Final = 60.0
# Pause before probing a blocked account (1100/1101/1102, credentials): such blocks are
# lifted by a person, so once every five minutes is soon enough and costs nothing.
ACCOUNT_PROBE_INTERVAL: Final = 300.0
# Fresh claims submitted together (by the intake run that claimed them, or one
# `tryon.submit_batch` run): their writes share transactions, and their creates go one
# after another within one attempt window (25 creates take about 0.1 s), a straggler
# aside (CREATE_PATIENCE).
SUBMIT_BATCH_MAX: Final = 25
# A batched create not answered within this many seconds is a straggler: it keeps its
# own thread (and its job) until its answer or the end of its attempt window (a late
# answer is a task id; a timeout, a lookup after the visibility grace), and the batch
# sends the next create meanwhile. Creates answer in milliseconds (the task is only queued), so one
# second is far beyond a healthy answer, and a stalled connection costs the rest of its
# batch one second instead of a read timeout each.
CREATE_PATIENCE: Final = 1.0
# How long a submit claim holds a slot before the sweep may give it to another run:
# longer than one create's timeouts plus a lookup by external_task_id.
SUBMIT_LEASE_SECONDS: Final = 180.0
# A fresh claim of a worker's, renewed by that worker's heartbeat while it lives: a
# worker killed with its claims in memory (an intake run that claimed and was submitting,
# a dispatch whose messages were not yet sent) blocks their slots this long, not for
# SUBMIT_LEASE_SECONDS. Several heartbeats fit in it, so a loaded machine whose heartbeat
# runs a few seconds late does not lose its claims (losing one only costs a lookup).
CLAIM_LEASE_SECONDS: Final = 10.0
# Heartbeats per claim lease: the lease is renewed every CLAIM_LEASE_SECONDS / 4 s, and
# the same beat notices claims whose holder's heartbeat stopped (a kill -9 elsewhere).
CLAIM_HEARTBEATS_PER_LEASE: Final = 4
# A worker whose broker connection was lost tries again every 0.5 s, growing to this:
# kombu's default grows to 30 s, so after a 30 s failover a worker reconnected up to 12 s
# after the broker was back, with every slot idle. A refused connection costs nothing.
BROKER_RECONNECT_START: Final = 0.5
BROKER_RECONNECT_MAX: Final = 2.0
# Deliveries before RabbitMQ dead-letters a message: a message that kills its worker
# ten times in a row is poison, not bad luck.
DELIVERY_LIMIT: Final = 10
# Retries of a task that raised (a bug, a poison message) before its message is parked.
# An outage of the job store or the broker is not counted here: it is waited out.
TASK_FAILURE_RETRIES: Final = 4
# The backoff between those retries: 1 s, then doubling to at most 30 s.
TASK_FAILURE_BACKOFF_BASE: Final = 1.0
TASK_FAILURE_BACKOFF_CAP: Final = 30.0
# While the job store or the broker does not answer, tasks try again after 1 s, then
# doubling up to this: a failover of one to two minutes is noticed within half a minute.
OUTAGE_BACKOFF_BASE: Final = 1.0
OUTAGE_RETRY_MAX: Final = 30.0
# How long after a create may have been made a lookup's "not found" proves nothing: the
# API may still be processing our request when our read times out, or show a new task in
# its index seconds late. Longer than any lag seen; a resend earlier could bill twice.
CREATE_VISIBILITY_GRACE: Final = 60.0
# Slack added to a submit run's attempt window beyond its HTTP timeouts (database writes,
# scheduling): nobody may take a claim over while its owner may still be sending.
ATTEMPT_SLACK_SECONDS: Final = 5.0

# --- tracking and the sweep ------------------------------------------------------------
# First status query after a create: a try-on rarely finishes in under 10 s.
TRACK_FIRST_DELAY: Final = 10.0
# The longest gap between status queries: a finished job is noticed within a minute.
TRACK_INTERVAL_MAX: Final = 60.0
# Seconds from submission to reporting a task overdue: far beyond Kling's usual minutes.
# Not a verdict: the task is already paid for, so it is still followed, at the pace below.
TRACK_DEADLINE: Final = 3600.0
# Gap between status queries of an overdue task: such a task is rare and its result is
# no longer awaited by the minute, so ten minutes costs at most 144 queries a day (free
# calls, no slot), and a callback still ends the job at once.
OVERDUE_POLL_INTERVAL: Final = 600.0
# Kling deletes a task's images 30 days after it was made: an overdue task that has not
# ended by then can never give a result, so its job fails (`expired`).
KLING_TASK_LIFETIME: Final = 30 * 86400.0
# With Kling's callbacks on (TRYON_PUBLIC_URL), polling is only the safety net: the
# first query comes when a callback is overdue (tasks take 15-60 s, so two minutes
# means it was lost), then at growing intervals up to ten minutes. A lost callback costs
# latency, never a job.
CALLBACK_OVERDUE_AFTER: Final = 120.0
CALLBACK_POLL_MAX: Final = 600.0
# A callback that arrives before the create's answer was recorded (a very fast task) is
# looked at again this many seconds later, a few times.
EARLY_CALLBACK_RETRY: Final = 2.0
EARLY_CALLBACK_TRIES: Final = 10
# Seconds between sweeps sent by each worker (jittered): stranded jobs wait at most this.
SWEEP_INTERVAL: Final = 30.0
# Celery task results are deleted after a day (by a sweep, at most once an hour).
RESULT_EXPIRY: Final = 86400.0
RESULTS_CLEANUP_EVERY: Final = 3600.0
# The first sweep comes this many seconds after a worker starts (a random point in the
# range): soon, to rescue what the last crash left, but not all workers at once.
SWEEP_FIRST_DELAY: Final = (1.0, 3.0)
# Later sweeps are spread by this fraction either way, so workers do not sweep in step.
SWEEP_JITTER: Final = 0.2

# --- result copies and retention --------------------------------------------------------
# Largest result image we copy: Kling's PNGs are a few MB; 50 MiB is far beyond any
# genuine result and keeps one bad URL from filling a disk or a worker's memory.
RESULT_MAX_BYTES: Final = 50 * 1024 * 1024
# First wait before a failed copy is tried again, and the longest wait: the API's URLs
# live 30 days, so a storage outage of hours is waited out at one try every 5 minutes.
COPY_RETRY_BASE: Final = 5.0
COPY_RETRY_MAX: Final = 300.0
# A copy due this long ago and still missing lost its message (a worker died, an
# embedded broker restarted): the sweep sends it again. Longer than one copy takes.
COPY_LOST_AFTER: Final = 120.0
# Lifetime of a presigned URL (`tryon results url --expires`): an hour to download.
PRESIGN_EXPIRES: Final = 3600
# The longest presigned lifetime S3 (SigV4) accepts: seven days.
PRESIGN_EXPIRES_MAX: Final = 7 * 86400
# `tryon submit|batch --wait`: how long a succeeded job's copies are waited for before
# the record is printed as it is (the copy goes on in the background).
COPY_WAIT: Final = 15.0
# Records handled per transaction by `tryon purge`: bounded memory at any backlog.
PURGE_BATCH: Final = 200

# --- the job store ---------------------------------------------------------------------
# How often a process reads the database's clock again; in between, its time is this
# process's steady clock plus the offset last measured (store/clock.py): a reading per
# transaction was a tenth of the store's time, and the offset drifts by microseconds.
STORE_CLOCK_REFRESH: Final = 1.0

# --- brokers ---------------------------------------------------------------------------
# Embedded broker: an unacked message is delivered again after 15 minutes, longer than
# any task runs, so a slow task is not run twice while a killed one is not lost.
EMBEDDED_VISIBILITY_TIMEOUT: Final = 900.0
# Embedded broker: seconds between polls of its SQLite file (latency against CPU).
BROKER_POLLING_INTERVAL: Final = 0.1
# Raw job messages one worker holds at a time: bounded, so one worker cannot hoard the
# queue while another idles; two batches' worth, so that the next batch gathers while
# one is handed over.
INTAKE_PREFETCH: Final = 100
# Raw job messages that arrive together go to intake in one task message (RabbitMQ):
# at most this many, gathered for at most this long (a lone message waits this long:
# nothing next to a try-on of 15-60 s). A producer publishing about one message a
# millisecond fills 20 in that time; a backlog already waiting fills 50 at once.
INTAKE_BATCH_MAX: Final = 50
INTAKE_BATCH_WAIT: Final = 0.02
# While every pool process of the worker is busy, a batch gathers on for up to this long
# (it would wait in the queue anyway): a burst goes in runs of 50, not of 20. About one
# full run's time.
INTAKE_BUSY_WAIT: Final = 0.25

# --- input checks ----------------------------------------------------------------------
# Two 10 MB images as Base64 (~14 MB each), line breaks, metadata and the rest fit easily.
MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024
# The largest image accepted, in pixels, from its header, before anything is decoded: a
# PNG inflates to width x height x up to 8 bytes, so a 630 KB file claiming 9000x9000
# 16-bit RGBA pixels is 648 MB to inflate. The API needs no more than a few thousand px
# a side (its newer endpoint takes at most 2048), and a photo that fits its 10 MB is at
# most about 40 MP as JPEG: 40 MP refuses nothing a producer can usefully send, and the
# worst PNG under it inflates to 320 MB, counted in 1 MB steps, never held.
MAX_IMAGE_PIXELS: Final = 40_000_000
# The longest side accepted: a 10000 px side is already past any camera's (a 61 MP
# sensor is 9504 px wide); a longer one is a strip, no photo of a person or a garment.
MAX_IMAGE_SIDE: Final = 10_000
# Levels of arrays and objects a job message may nest, the message itself the first:
# metadata holds ids and references (a handful of levels); every level costs a frame
# in validation, hashing and JSON encoding, and Python stops at about a thousand, so a
# deeper message would crash intake instead of being rejected with its reason.
MAX_JSON_DEPTH: Final = 32
# Redirects a URL preflight follows: CDNs use one or two; more is a loop or a trick.
PREFLIGHT_MAX_REDIRECTS: Final = 3
# Messages of one intake run whose URLs a worker preflights side by side: each may wait
# out its deadline on a slow image host, so a run of 50 takes about 50 / 8 deadlines
# instead of 50; more would open that many connections to producers' hosts at once.
INTAKE_PREFLIGHT_THREADS: Final = 8
# URL preflights `tryon web` runs at once, on threads of their own: each may hold its
# thread for a whole HTTP_DEADLINE on a slow image host, so they must never take the
# threads that /readyz, job reads and Kling's callbacks need (anyio's pool of 40). A
# request that finds them all busy is answered 503 with Retry-After at once. 16 of a
# 35 s deadline still admits about 27 slow jobs a minute; healthy hosts take 100 ms.
WEB_PREFLIGHT_SLOTS: Final = 16
# The Retry-After of that 503: about the time a slow preflight takes to end.
WEB_BUSY_RETRY_AFTER: Final = 10
# Seconds `tryon web` lets requests in progress finish after SIGTERM before it closes
# them: every request but a preflight ends in well under a second, and a preflight
# answered by nobody is one the producer retries.
WEB_SHUTDOWN_GRACE: Final = 5

# --- commands --------------------------------------------------------------------------
# `tryon submit|batch --wait`: an hour covers a catalogue batch on a small account.
WAIT_TIMEOUT: Final = 3600.0
# `tryon demo`: the sample jobs end in seconds on the emulator; five minutes is generous.
DEMO_TIMEOUT: Final = 300.0
# Jobs listed by `tryon jobs` and `list_jobs()` unless asked otherwise: a screenful or two.
LIST_LIMIT: Final = 100
# How long `tryon worker` waits for a sandbox emulator on another host (compose service).
REMOTE_EMULATOR_WAIT: Final = 60.0
# (connect, read) timeout of the probe that asks whether an emulator answers: it is
# local or next door, so a slow answer means none.
EMULATOR_PROBE_TIMEOUT: Final = (1.0, 2.0)
# `tryon ping` (the workers' container health check) collects answers this long: a
# worker answers from its main process, not its pool, in milliseconds when well; five
# seconds leave a loaded host its margin and fit the health check's 30 s timeout.
PING_TIMEOUT: Final = 5.0

# --- operations: health, metrics, the account's units ---------------------------------
# `tryon worker` serves /metrics from its main process on this port (0: off); 9808 is
# free in Prometheus's port allocation list. Bound to loopback unless told otherwise:
# every HTTP endpoint is authenticated unless it is local or a health check.
METRICS_PORT: Final = 9808
METRICS_HOST: Final = "127.0.0.1"
# Warn (log and `tryon health`) when the account's try-on units fall below this: about
# a day of a small catalogue, time enough for someone to buy the next pack.
UNITS_WARN_BELOW: Final = 100.0
# Seconds between reads of GET /account/costs by each worker: free, but limited to about
# one request a second per account, and units move slowly.
ACCOUNT_CHECK_INTERVAL: Final = 60.0
# Histogram buckets (seconds). API calls: tens of ms to a create's 30 s read timeout.
API_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Queue wait (created to submitted) and result latency (submitted to the end): seconds
# for an idle account, up to hours for a backlog behind a small account.
JOB_LATENCY_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0)
# --- webhooks to producers (Standard Webhooks) -------------------------------------------
# When the retries of a delivery go, in seconds after its first attempt (sent at once):
# the Standard Webhooks example schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,
# 24 h), read as offsets, so a receiver that is down for most of a day still gets every
# event; after the last one the delivery is recorded failed (and can be replayed).
WEBHOOK_SCHEDULE: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
# Each wait is spread by this fraction either way, so deliveries that failed together
# (a receiver's outage) do not all come back in the same second.
WEBHOOK_JITTER: Final = 0.1
# Read timeout of one delivery: receivers should answer at once and work later; Svix
# uses 15 s. The connect timeout is the service's (HTTP_CONNECT_TIMEOUT).
WEBHOOK_TIMEOUT: Final = 15.0
# The whole-call deadline of one delivery attempt: its connect and read timeouts
# summed (`Settings.webhook_deadline`), so an attempt always ends inside its fence
# (that deadline + WEBHOOK_ATTEMPT_SLACK) and is counted, however a receiver drips.
WEBHOOK_DEADLINE: Final = HTTP_CONNECT_TIMEOUT + WEBHOOK_TIMEOUT
# A Retry-After longer than this is capped: a receiver cannot park a delivery for ever.
WEBHOOK_RETRY_AFTER_CAP: Final = 86400.0
# Slack added to one attempt's timeouts for the attempt's fence (database writes, DNS).
WEBHOOK_ATTEMPT_SLACK: Final = 10.0
# Random bytes of a generated `whsec_` secret (Standard Webhooks: 24 to 64).
WEBHOOK_SECRET_BYTES: Final = 32
# Terminal jobs the sweep checks for a missing delivery (a worker killed between the
# state change and the webhook's row): those that ended within this many seconds.
WEBHOOK_RESCUE_WINDOW: Final = 86400.0
# Deliveries one worker makes at once, in its delivery lane (worker/delivery_lane.py):
# threads of the worker's main process, apart from the pool that takes in, submits and
# records jobs. Each mostly waits on its receiver, so a thread is cheap; the bound is what
# a storm of receivers that never answer can hold (this many threads, and at most this
# many of the lane's database connections, whose pool holds 10), while quick receivers
# still get 8 attempts at a time from every worker.
WEBHOOK_CONCURRENCY: Final = 8
# How long a stopping worker lets its lane's attempts finish before it closes the lane's
# broker connection (an unfinished attempt's message then goes back to the queue, and its
# fence makes the next taker wait: at least once, never two POSTs at once). Short: a
# deploy's warm stop must not wait for receivers that hang.
WEBHOOK_STOP_GRACE: Final = 5.0
# How often the lane's consumer thread looks at its finished attempts while some are in
# flight (it acks their messages and takes new ones); idle, it wakes for each message.
WEBHOOK_LANE_TICK: Final = 0.02

# --- the review console (web/console/) ---------------------------------------------------
# A session lasts a working day; then the reviewer logs in again.
CONSOLE_SESSION_SECONDS: Final = 12 * 3600
# Failed logins allowed (per user name and per client address) before each further try
# waits: CONSOLE_LOGIN_BACKOFF_BASE * 2**(failures beyond), at most CONSOLE_LOGIN_BACKOFF_MAX.
CONSOLE_LOGIN_FREE_FAILURES: Final = 5
CONSOLE_LOGIN_BACKOFF_BASE: Final = 2.0
CONSOLE_LOGIN_BACKOFF_MAX: Final = 900.0
# Rows of the jobs table (and tiles of the gallery) per page.
CONSOLE_PAGE_SIZE: Final = 50
# The longer side of the input thumbnails the console keeps (the full inputs never are).
CONSOLE_THUMBNAIL_PX: Final = 256

# --- estimates before sending a batch ----------------------------------------------------
# The published price of one try-on (USD per unit), and what one try-on takes at Kling
# (15-60 s measured on the live API: the middle), for `tryon batches estimate`.
UNIT_PRICE: Final = 0.07
TYPICAL_TRYON_SECONDS: Final = 30.0
