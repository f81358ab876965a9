"""The driver's logger levels, for its workers: ``logging.basicConfig(level=INFO)``
in the driver makes the workers' INFO records come too."""

from __future__ import annotations

import logging

__all__ = ["driver_levels"]


def driver_levels() -> dict[str, int]:
    """The root logger's effective level (as ``""``) and each logger's own level,
    where one is set."""
    levels = {"": logging.getLogger().getEffectiveLevel()}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels
