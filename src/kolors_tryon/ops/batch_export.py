"""A batch as CSV: one row per job, for `tryon batches export` and
`GET /v1/batches/{id}/export`.

Columns: job_id, state, error_code, error_message, units, metadata (JSON, keys sorted),
results (our stored copies, or Kling's URLs while no copy exists, space-separated).
Never image data: the record holds none.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from kolors_tryon.store import JobRecord

COLUMNS = ("job_id", "state", "error_code", "error_message", "units", "metadata", "results")


def batch_csv(records: Iterable[JobRecord]) -> str:
    """The CSV text of a batch's job records (in the order given)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records:
        writer.writerow(
            (
                record.job_id,
                str(record.state),
                record.error.code if record.error else "",
                record.error.message if record.error else "",
                record.final_unit_deduction or "",
                json.dumps(record.metadata, sort_keys=True, ensure_ascii=False),
                " ".join(image.stored or image.url for image in record.images),
            )
        )
    return out.getvalue()
