"""The job store: SQLAlchemy tables, the state machine, and the queries the pipeline needs."""

from kolors_tryon.store.migrate import SchemaOutdated, SchemaStatus
from kolors_tryon.store.opening import open_store, prepare_schema
from kolors_tryon.store.records import JobError, JobRecord, ResultImage
from kolors_tryon.store.repository import (
    AccountPause,
    Admission,
    Admitted,
    Busy,
    Claim,
    Created,
    CreatePlan,
    Forgotten,
    JobStore,
    NewJob,
    make_engine,
)
from kolors_tryon.store.states import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    JobState,
    can_move,
    is_terminal,
)

__all__ = [
    "IN_FLIGHT_STATES",
    "TERMINAL_STATES",
    "AccountPause",
    "Admission",
    "Admitted",
    "Busy",
    "Claim",
    "CreatePlan",
    "Created",
    "Forgotten",
    "JobError",
    "JobRecord",
    "JobState",
    "JobStore",
    "NewJob",
    "ResultImage",
    "SchemaOutdated",
    "SchemaStatus",
    "can_move",
    "is_terminal",
    "make_engine",
    "open_store",
    "prepare_schema",
]
