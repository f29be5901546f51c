"""TensorBoard event files beside the metric records, for `tensorboard --logdir results`.

Optional: the `tensorboard` extra (`pip install 'gptpipe[tensorboard]'`). It is imported only
when a writer is opened, and when it is missing training runs as before, with one info line
saying that no event files are written. The JSON records stay the report's source; the event
files are a view of the same figures. Writing them draws no random numbers, so a run's figures
do not depend on whether the extra is installed.

A pre-training run that resumes from update R opens its writer with `purge_step=R + 1`:
TensorBoard then hides whatever the killed run had logged after its checkpoint, and every
update shows once, as in the cut-back `metrics.jsonl`.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIR = "tensorboard"  # the event files' folder inside a stage's run or output folder


class EventLog:
    """Scalars of metric records as TensorBoard events, one event per figure and step."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def write(self, record: dict[str, Any], step: int, prefix: str = "") -> None:
        """Every finite number of `record` but the step itself, tagged `prefix + key`
        (None marks a figure not measured this time, a bool is no curve: both left out)."""
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(prefix + key, value, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_log(folder: Path, resume_step: int = 0) -> EventLog | None:
    """A writer into `folder`, or None (and a line saying so) without the tensorboard extra.

    `resume_step` 0 starts afresh: event files of an earlier start are removed. A later
    update hides the events logged after it (the killed run's steps the resumed run redoes).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch ships the wrapper; the `tensorboard` package may be absent
        log.info("no TensorBoard event files under %s: %s (install the `tensorboard` extra: "
                 "pip install 'gptpipe[tensorboard]')", folder, err)
        return None
    if resume_step == 0 and folder.exists():
        shutil.rmtree(folder)
    purge = resume_step + 1 if resume_step > 0 else None
    return EventLog(SummaryWriter(log_dir=str(folder), purge_step=purge))


def copy_events(src: Path, dest: Path) -> None:
    """Copy a run's event files into an output folder being written (none there: nothing)."""
    if src.is_dir():
        shutil.copytree(src, dest)

