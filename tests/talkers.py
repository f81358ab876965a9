"""Actors that print and log, for the tests of what operators see. Workers import
this module by name, as they do ``tests.helpers``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from actors import Actor
from tests.helpers import hold_task


class Talker(Actor):
    def say(self, text: str, times: int = 1) -> int:
        for _ in range(times):
            print(text)
        return os.getpid()

    def say_err(self, text: str) -> None:
        print(text, file=sys.stderr)

    def say_raw(self, text: str) -> None:
        os.write(1, text.encode() + b"\n")  # below Python's streams, as C code writes

    async def say_later(self, text: str) -> None:
        await asyncio.sleep(0)  # after its first wait the loop may run others meanwhile
        print(text)

    def say_and_die(self, text: str) -> None:
        print(text)  # no flush: line buffering must have sent it already
        os.kill(os.getpid(), signal.SIGKILL)

    def log(self, logger: str, level: int, text: str) -> None:
        logging.getLogger(logger).log(level, text, extra={"order": 7})

    def log_error(self, text: str) -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            logging.getLogger("app").exception(text)

    def level_of(self, logger: str) -> int:
        return logging.getLogger(logger).getEffectiveLevel()

    def pid(self) -> int:
        return os.getpid()

    def hold(self, started: str, release: str) -> str:
        return hold_task(started, release)


def shout(text: str) -> int:
    print(text)
    return os.getpid()
