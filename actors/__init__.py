"""dovecote's user-facing API: actors, their refs, futures and errors.

The engine that moves messages lives in ``runtime``; see ``runtime.ActorSystem``.
"""

from actors._actor import Actor, ActorContext, concurrent
from actors._errors import (
    ActorCrashedError,
    ActorError,
    ActorStoppedError,
    MailboxFullError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
)
from actors._future import ActorFuture
from actors._pool import ActorPool
from actors._ref import ActorRef
from actors._spec import Child, RestartPolicy, retryable

__all__ = [
    "Actor",
    "ActorContext",
    "ActorCrashedError",
    "ActorError",
    "ActorFuture",
    "ActorPool",
    "ActorRef",
    "ActorStoppedError",
    "Child",
    "MailboxFullError",
    "RemoteError",
    "RemoteTraceback",
    "RestartPolicy",
    "SerializationError",
    "concurrent",
    "retryable",
]
