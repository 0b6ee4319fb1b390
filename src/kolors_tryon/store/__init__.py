"""The job store: SQLAlchemy tables, the state machine, and the queries the pipeline needs."""

from kolors_tryon.store.account import AccountPause
from kolors_tryon.store.batches import BatchRecord
from kolors_tryon.store.claims import Claim
from kolors_tryon.store.database import Database, make_engine
from kolors_tryon.store.intake import Admission, Admitted, NewJob
from kolors_tryon.store.migrate import SchemaOutdated, SchemaStatus
from kolors_tryon.store.opening import open_store, prepare_schema
from kolors_tryon.store.records import JobError, JobRecord, ResultImage
from kolors_tryon.store.repository import JobStore
from kolors_tryon.store.retention import Forgotten
from kolors_tryon.store.states import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    JobState,
    can_move,
    is_terminal,
)
from kolors_tryon.store.submits import Busy, Created, CreatePlan

__all__ = [
    "IN_FLIGHT_STATES",
    "TERMINAL_STATES",
    "AccountPause",
    "Admission",
    "Admitted",
    "BatchRecord",
    "Busy",
    "Claim",
    "CreatePlan",
    "Created",
    "Database",
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
