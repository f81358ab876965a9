"""dovecote, a multiprocess actor runtime for Python with ZeroMQ sockets as mailboxes.

The front door: this package re-exports the whole public API, the user API of
``actors`` (actors, their refs, futures and errors) and the engine's entry
points from ``runtime`` (``ActorSystem``, its ``DovecoteExecutor`` and
``AsyncActorSystem``, and ``Stage``)::

    from dovecote import Actor, ActorSystem

The names are the same objects as those of ``actors`` and ``runtime``.
"""

from actors import (
    Actor,
    ActorContext,
    ActorCrashedError,
    ActorError,
    ActorFuture,
    ActorPool,
    ActorRef,
    ActorStoppedError,
    Child,
    MailboxFullError,
    RemoteError,
    RemoteTraceback,
    RestartPolicy,
    SerializationError,
    concurrent,
    retryable,
)
from runtime import ActorSystem, AsyncActorSystem, DovecoteExecutor, Stage

__all__ = [
    "Actor",
    "ActorContext",
    "ActorCrashedError",
    "ActorError",
    "ActorFuture",
    "ActorPool",
    "ActorRef",
    "ActorStoppedError",
    "ActorSystem",
    "AsyncActorSystem",
    "Child",
    "DovecoteExecutor",
    "MailboxFullError",
    "RemoteError",
    "RemoteTraceback",
    "RestartPolicy",
    "SerializationError",
    "Stage",
    "concurrent",
    "retryable",
]
