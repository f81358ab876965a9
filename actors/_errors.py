"""The exceptions a caller can receive. Every one of them pickles."""

from __future__ import annotations

__all__ = [
    "ActorCrashedError",
    "ActorError",
    "ActorStoppedError",
    "MailboxFullError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
]


class ActorError(Exception):
    """Base class of the errors the runtime itself raises."""


class ActorStoppedError(ActorError):
    """The actor is not running: it was stopped, never existed, or its system is gone."""


class ActorCrashedError(ActorError):
    """The process hosting the actor died while the call was pending.

    ``cause`` says how: an exit code, a signal, or a lost supervisor.
    """

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message, cause)
        self.cause = cause

    def __str__(self) -> str:
        return str(self.args[0])


class MailboxFullError(ActorError):
    """The destination did not take the message within the send timeout (backpressure)."""


class SerializationError(ActorError, TypeError):
    """A value could not be pickled (at the call site) or unpickled (at the receiver)."""


class RemoteError(ActorError):
    """Stands in for a remote exception that could not itself cross between processes."""

    def __init__(self, message: str, type_name: str = "") -> None:
        super().__init__(message, type_name)
        self.type_name = type_name

    def __str__(self) -> str:
        return f"{self.args[1]}: {self.args[0]}" if self.args[1] else str(self.args[0])


class RemoteTraceback(Exception):
    """The traceback of an exception raised in another process, chained as ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\nTraceback in the actor's process:\n{self.text}"
