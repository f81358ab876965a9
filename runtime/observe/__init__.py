"""What operators see of a running system: the workers' output forwarded to the
driver, their logging as real records, the status of workers and actors, the
discovery files that let ``dovecote status`` attach from another terminal,
progress bars, metrics and process titles.

::

    worker k                          supervisor                          driver
    stdout, stderr ── pipes ────────▶ OutputPipes: lines, tags, records
    (TaggedStream, JsonLogHandler)      ├▶ run_dir/logs/worker-k.jsonl
                                        └▶ bus "dovecote.output" ───────▶ Printer thread
    health thread ── heartbeats ────▶ Observer: numbers, events           (prefix, fold,
                     (WorkerStats)      ◀── Status (JSON) ── system.status(), CLI
                                        └▶ discovery file ◀── dovecote status/top/...

Used by the three process packages and the CLI; it sits on ``wire``, ``core``
and ``net``, and imports none of the process packages.
"""

from __future__ import annotations

from runtime.observe import _commands as commands
from runtime.observe._capture import (
    JsonLogHandler,
    TaggedStream,
    apply_levels,
    capture_output,
    record_dict,
)
from runtime.observe._discovery import (
    DiscoveryError,
    check_private_dir,
    discovery_dir,
    list_systems,
    prune,
    read_entry,
    remove_entry,
    write_entry,
)
from runtime.observe._levels import driver_levels
from runtime.observe._lines import (
    MARK,
    Folder,
    Line,
    StreamSplitter,
    colour,
    log_line,
    prefix,
    tag_line,
)
from runtime.observe._metrics import MetricsServer, check_listen, families
from runtime.observe._pipes import OUTPUT_TOPIC, OutputPipes, log_dir, log_file
from runtime.observe._printer import Printer, fold_window, rebuild_record, use_colour
from runtime.observe._progress import Bar, Progress, bars_paused, progress_for
from runtime.observe._status import (
    ActorStatus,
    SystemStatus,
    WorkerStatus,
    crash_kind,
    status_from_json,
)
from runtime.observe._title import set_title

__all__ = [
    "MARK",
    "OUTPUT_TOPIC",
    "ActorStatus",
    "Bar",
    "DiscoveryError",
    "Folder",
    "JsonLogHandler",
    "Line",
    "MetricsServer",
    "OutputPipes",
    "Printer",
    "Progress",
    "StreamSplitter",
    "SystemStatus",
    "TaggedStream",
    "WorkerStatus",
    "apply_levels",
    "bars_paused",
    "capture_output",
    "check_listen",
    "check_private_dir",
    "colour",
    "commands",
    "crash_kind",
    "discovery_dir",
    "driver_levels",
    "families",
    "fold_window",
    "list_systems",
    "log_dir",
    "log_file",
    "log_line",
    "prefix",
    "progress_for",
    "prune",
    "read_entry",
    "rebuild_record",
    "record_dict",
    "remove_entry",
    "set_title",
    "status_from_json",
    "tag_line",
    "use_colour",
    "write_entry",
]
