"""The pipeline's backoff: a re-export of the one in `kolors_tryon.config.backoff`.

The retry budget is written down there; the numbers are in `kolors_tryon.config.defaults`.
"""

from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.defaults import BUSY_BACKOFF_CAP

__all__ = ["BUSY_BACKOFF_CAP", "backoff_delay"]
