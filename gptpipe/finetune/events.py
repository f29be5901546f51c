"""A fine-tuning run's TensorBoard events (`gptpipe.tblog`), in its output's `tensorboard/`.

Tags: `train/loss`, `train/task_loss`, `train/lm_loss` (when λ > 0) and `train/lr` at every
update; `epoch/...`, each epoch's mean losses as metrics.json's `train.epoch_*` lists, at the
epoch's last update; `SPLIT/METRIC`, the scores of metrics.json, at the last update.
"""

from __future__ import annotations

from pathlib import Path

from ..tblog import DIR, open_log
from .loop import TrainLog


def epoch_records(train_log: TrainLog) -> list[dict]:
    """Each epoch's mean losses at the update that ends it (every epoch has as many)."""
    per_epoch = train_log.steps // max(len(train_log.epoch_loss), 1)
    lm = train_log.epoch_lm_loss or [None] * len(train_log.epoch_loss)
    return [{"step": per_epoch * (e + 1), "loss": total, "task_loss": task, "lm_loss": lm_loss}
            for e, (total, task, lm_loss) in
            enumerate(zip(train_log.epoch_loss, train_log.epoch_task_loss, lm))]


def write(output: Path, curve: list[dict], train_log: TrainLog,
          scores: dict[str, dict[str, float | None]]) -> None:
    """Events into `output`/tensorboard; `curve`: `loop.train`'s per-update records (its
    `on_update`). Written after training, into the output folder being assembled: fine-tuning
    does not resume, and its output appears at once, complete (`gptpipe.atomic`)."""
    events = open_log(output / DIR)
    if events is None:
        return
    try:
        for rec in curve:
            events.write(rec, rec["step"], "train/")
        for rec in epoch_records(train_log):
            events.write(rec, rec["step"], "epoch/")
        for split, metrics in scores.items():
            events.write(metrics, train_log.steps, f"{split}/")
    finally:
        events.close()
