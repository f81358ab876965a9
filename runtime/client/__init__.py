"""The sending side every process owns: the transport (calls, replies, requests to
the supervisor) and the requests of the directory (spawn, lookup, watch)."""

from __future__ import annotations

from runtime.client._cancel import CANCEL_TIMEOUT, Local
from runtime.client._control import settle
from runtime.client._requests import Requests, identity
from runtime.client._transport import Transport

__all__ = ["CANCEL_TIMEOUT", "Local", "Requests", "Transport", "identity", "settle"]
