"""Track: follow a submitted job to its end with few API calls and never sleeping.

Cost per job: one status query by task id at `track_first_delay` after submission, then
at intervals growing by half each time up to `track_interval_max` (10 s, 15 s, 22 s,
34 s, 50 s, 60 s ... by default). A typical 15-60 s task therefore costs 2 to 4 queries;
queries use no account slot. With Kling's callbacks on (`TRYON_PUBLIC_URL`), a callback
ends the job the moment Kling reports it (pipeline/callbacks.py), and these queries are
only the safety net: the first when a callback is overdue (`callback_overdue_after`),
then rarely.

The deadline (`track_deadline` after submission) bounds how long we wait before we say
so, but it is not a verdict: the task is paid for, so its result is never thrown away.
At the deadline the task is asked once more (Kling may have finished long ago, after an
outage or a backlog kept our messages waiting): a finished task gets its result; one
still running makes the job *overdue*: a flag on the record (`overdue_at`), not a state,
reported once (event `job.overdue`, a webhook, a metric). The job keeps its state and
its slot (Kling counts the task until it ends) and is still followed, every
`overdue_poll_interval`, until Kling ends the task: succeeded with its images, or failed
as Kling says, or failed when Kling's 30 days have passed (its images would be gone).
Jobs failed at the deadline by an earlier version (*lingering*) are followed until
their task ends, only to free their slot.
"""

from __future__ import annotations

import logging

from kolors_tryon.config.defaults import KLING_TASK_LIFETIME
from kolors_tryon.kling import KlingError, KlingTask, NotFoundError, PermanentKlingError
from kolors_tryon.pipeline.pool import ACCOUNT_REMOVED_CODE, AccountRemoved
from kolors_tryon.pipeline.results import keep_results
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.store import JobRecord, JobState
from kolors_tryon.store.records import unix_seconds
from kolors_tryon.store.states import TRACKED_STATES

log = logging.getLogger(__name__)

GROWTH = 1.5


def next_interval(rt: Runtime, polls_done: int) -> float:
    """Seconds until the next query, after `polls_done` queries.

    With callbacks on, the queries are the safety net for a lost callback: they start
    when one is overdue and stay rare.
    """
    settings = rt.settings
    first = max(settings.effective_first_poll, 0.2)
    return float(min(settings.effective_poll_max, first * GROWTH**polls_done))


def track_job(rt: Runtime, job_id: str, poll: int) -> Step:
    """Query the job's task once and record what changed; asks to be run again if needed."""
    record = rt.store.get(job_id)
    if record is None or record.kling_task_id is None:
        return Step(note="not tracked")
    lingering = record.state is JobState.FAILED
    if record.state not in TRACKED_STATES and not lingering:
        return Step(note="not tracked")
    if not rt.store.tracking.enter_poll(job_id, poll):
        return Step(note="stale track message")
    if lingering:
        return _follow_lingering(rt, record, poll + 1)

    polls_done = poll + 1
    submitted_at = unix_seconds(record.submitted_at)
    age = rt.store.now() - submitted_at if submitted_at is not None else 0.0
    past_deadline = age > rt.settings.track_deadline
    try:
        # The job's own account: a task id means nothing on another one.
        task = rt.kling_for(record.account).get(record.kling_task_id)
    except AccountRemoved as gone:
        return _finish(rt, job_id, JobState.FAILED, ACCOUNT_REMOVED_CODE, str(gone))
    except NotFoundError:
        message = f"Kling no longer knows task {record.kling_task_id}"
        return _finish(rt, job_id, JobState.FAILED, "task_missing", message)
    except KlingError as err:
        if past_deadline:
            return _overdue(rt, record, age, polls_done, f"the last query failed: {err}")
        delay = max(next_interval(rt, polls_done), err.retry_after or 0.0)
        if isinstance(err, PermanentKlingError):
            log.error("job %s: status query refused: %s", job_id, err)
            delay = rt.settings.track_interval_max
        return Step(track_in=delay, track_poll=polls_done, note=f"query failed: {err}")

    ended = record_task_end(rt, job_id, task)
    if ended is not None:
        return ended
    changed: tuple[JobRecord, ...] = ()
    if task.status == "processing" and record.state is JobState.SUBMITTED:
        moved = rt.store.tracking.mark_processing(job_id)
        changed = (moved,) if moved else ()
    if past_deadline:
        return _overdue(rt, record, age, polls_done, f"it is still {task.status}", changed)
    return Step(
        changed=changed,
        track_in=next_interval(rt, polls_done),
        track_poll=polls_done,
        note=task.status,
    )


def record_task_end(rt: Runtime, job_id: str, task: KlingTask) -> Step | None:
    """If the task has ended, end the job with its result; None while it runs."""
    if task.status == "succeed":
        images = keep_results(rt, job_id, task)
        finished = rt.store.tracking.finish(
            job_id,
            JobState.SUCCEEDED,
            images=images,
            final_unit_deduction=task.final_unit_deduction,
        )
        return Step(
            changed=(finished,) if finished else (),
            dispatch=True,
            copy_results=finished is not None and rt.settings.store_result_copies and bool(images),
            note="succeeded",
        )
    if task.status == "failed":
        reason = task.status_message or "Kling reported the task as failed without a reason"
        return _finish(rt, job_id, JobState.FAILED, "kling_task_failed", reason)
    return None


def _overdue(
    rt: Runtime,
    record: JobRecord,
    age: float,
    polls_done: int,
    why: str,
    changed: tuple[JobRecord, ...] = (),
) -> Step:
    """Past our deadline and not ended: report the job overdue once, follow it slowly.

    Its result, once Kling has it, is still the job's; only Kling's own end of the task
    (30 days, after which its images are deleted) ends the waiting.
    """
    settings = rt.settings
    if age > KLING_TASK_LIFETIME:
        message = (
            f"Kling's task {record.kling_task_id} has not ended {age / 86400:.0f} days after "
            f"submission ({why}); Kling keeps a task's images 30 days"
        )
        return _finish(rt, record.key, JobState.FAILED, "expired", message)
    flagged = rt.store.tracking.mark_overdue(record.key) if record.overdue_at is None else None
    if flagged is not None:
        log.warning(
            "job %s overdue: no result from Kling within %g s of submission (task %s; %s); "
            "still followed every %g s",
            record.key,
            settings.track_deadline,
            record.kling_task_id,
            why,
            settings.overdue_poll_interval,
        )
    return Step(
        changed=changed,
        overdue=(flagged,) if flagged is not None else (),
        track_in=settings.overdue_poll_interval,
        track_poll=polls_done,
        note="overdue",
    )


def _follow_lingering(rt: Runtime, record: JobRecord, polls_done: int) -> Step:
    """A job failed by our deadline: free its slot once Kling says the task ended."""
    assert record.kling_task_id is not None
    finished_at = unix_seconds(record.finished_at)
    overdue = finished_at is not None and (
        rt.store.now() - finished_at > rt.settings.track_deadline
    )
    try:
        task = rt.kling_for(record.account).get(record.kling_task_id)
        ended = task.is_terminal
    except (NotFoundError, AccountRemoved):
        ended = True
    except KlingError:
        ended = False
    if ended or overdue:
        rt.store.tracking.release_lingering(record.key)
        log.info("job %s: its lingering Kling task ended; slot freed", record.key)
        return Step(dispatch=True, note="lingering task ended")
    return Step(track_in=rt.settings.track_interval_max, track_poll=polls_done, note="lingering")


def _finish(rt: Runtime, job_id: str, state: JobState, code: str, message: str) -> Step:
    record = rt.store.tracking.finish(job_id, state, error_code=code, error_message=message)
    log.info("job %s %s: %s", job_id, state, message)
    return Step(changed=(record,) if record else (), dispatch=True, note=str(state))
