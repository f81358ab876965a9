"""The sending side every process owns: the transport (calls, replies, requests to
the supervisor) and the requests of the directory (spawn, lookup, watch)."""

from __future__ import annotations

from runtime.client._requests import Requests, identity
from runtime.client._transport import CANCEL_TIMEOUT, Local, Transport, settle

__all__ = ["CANCEL_TIMEOUT", "Local", "Requests", "Transport", "identity", "settle"]
