"""Intake's last step for the review console: keep 256 px thumbnails of new jobs' inputs.

Off with TRYON_CONSOLE_THUMBNAILS=false. Done after the jobs are recorded (the rows they
hang on exist) and never allowed to fail intake: a job without thumbnails is shown
without them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kolors_tryon.jobs import ValidJob
from kolors_tryon.jobs.thumbnails import input_thumbnails
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.store import Admission, Admitted
from kolors_tryon.store.thumbnails import save_thumbnails

__all__ = ["keep_input_thumbnails"]

log = logging.getLogger(__name__)


def keep_input_thumbnails(rt: Runtime, recorded: Iterable[tuple[ValidJob, Admitted]]) -> None:
    """Thumbnails of the inputs of each job just recorded (not of duplicates)."""
    if not rt.settings.console_thumbnails:
        return
    for valid, admitted in recorded:
        if admitted.outcome in (Admission.DUPLICATE, Admission.CONFLICT):
            continue
        try:
            thumbnails = input_thumbnails(valid.message.human_image, valid.message.cloth_image)
            save_thumbnails(rt.store.engine, valid.job_id, thumbnails)
        except Exception as exc:
            log.warning("thumbnails of job %s not kept: %s", valid.job_id, type(exc).__name__)
