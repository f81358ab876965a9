"""Process titles: ``dovecote worker 1 (system a1b2c3d4)`` in ``ps`` and ``top``
instead of a JSON command line, when ``setproctitle`` is installed (the
``observe`` extra)."""

from __future__ import annotations

__all__ = ["set_title"]


def set_title(title: str) -> bool:
    """Set this process's title; False if setproctitle is not installed."""
    try:
        import setproctitle
    except ImportError:
        return False
    setproctitle.setproctitle(title)
    return True
