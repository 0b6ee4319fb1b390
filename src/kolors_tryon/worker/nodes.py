"""Worker node names, and asking the namespace's workers whether they answer.

Celery names a worker `celery@<host>` unless told otherwise, and holds the remote-control
queue `<node name>.<control exchange>.pidbox` exclusively: a second worker of the same
name (two `tryon worker` on one machine, or two containers sharing a hostname) cannot
take it, restarts its consumer on RESOURCE_LOCKED about once a second, for ever, and
consumes nothing. So `tryon worker` gives each worker a name of its own,
`<namespace>-<pid>-<4 hex>@<host>`, unless `-n/--hostname` names it:

- the pid tells an operator which process a node is (`ps`, `kill`), and is unique among
  the workers of one machine at one time;
- the random suffix covers what the pid cannot: containers that share a hostname
  (`network_mode: host`, a fixed `hostname:`) each run their worker as the same pid of
  their own pid namespace;
- the namespace says which deployment a node belongs to in Flower and in RabbitMQ's
  queue list (the control exchange already keeps deployments apart).

A restarted worker is a new node (Flower shows the old one offline): nothing of ours
keys on node names (claims are owned by task ids, not nodes).

The ping goes through the app's own control exchange (`<ns>.control`): `celery inspect
ping` with only a broker URL asks Celery's default exchange, where none of our workers
listens.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence

from kolors_tryon.config import Settings
from kolors_tryon.worker.app import create_app

# The worker options that name the node (Celery's `-n/--hostname`), as click reads them.
_NAME_OPTIONS = ("-n", "--hostname")


def default_node_name(settings: Settings, pid: int | None = None) -> str:
    """A node name no other worker has: `<namespace>-<pid>-<4 hex>@%h` (Celery fills in
    the host)."""
    pid = os.getpid() if pid is None else pid
    return f"{settings.namespace}-{pid}-{secrets.token_hex(2)}@%h"


def names_the_node(celery_args: Sequence[str]) -> bool:
    """Whether the worker's arguments name the node themselves (`-n X`, `-nX`,
    `--hostname X`, `--hostname=X`)."""
    for arg in celery_args:
        if arg == "--":
            return False
        if arg in _NAME_OPTIONS or arg.startswith("--hostname="):
            return True
        if arg.startswith("-n") and not arg.startswith("--"):
            return True
    return False


def with_node_name(settings: Settings, celery_args: Sequence[str]) -> list[str]:
    """The worker's arguments, with a unique `--hostname` unless they name the node."""
    if names_the_node(celery_args):
        return list(celery_args)
    return [f"--hostname={default_node_name(settings)}", *celery_args]


def host_of(node: str) -> str:
    """The host part of a node name (`name@host`)."""
    return node.partition("@")[2]


def ping_workers(settings: Settings, timeout: float) -> list[str]:
    """The node names of the namespace's workers that answer a ping within `timeout` s.

    Raises:
        Exception: The broker cannot be reached (kombu's connection errors).
    """
    app = create_app(settings)
    try:
        with app.connection_for_write() as connection:
            # One connection attempt: kombu's default channel would retry for ever, and a
            # health check must answer, not hang until its runner kills it.
            connection.ensure_connection(max_retries=1)
            replies = app.control.ping(timeout=timeout, connection=connection) or []
    finally:
        app.close()
    return sorted(node for reply in replies for node in reply)


def on_this_host(nodes: Sequence[str]) -> list[str]:
    """The nodes that run on this machine (in a container: this container)."""
    here = socket.gethostname()
    return [node for node in nodes if host_of(node) == here]
