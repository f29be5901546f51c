"""The pre-training curves as CSV tables, for `dvc plots` (which reads CSV, TSV or JSON, but
not the JSON Lines of metrics.jsonl, the report's source).

Two tables, because validation is measured on fewer updates than training is logged: one CSV
with blank cells for the other updates would draw gaps (or zeros) in DVC's Vega-Lite plots.
Both come from metrics.jsonl's records and are written into the output folder before it is
moved into place, so they are published together with it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from ..errors import GptpipeError

TRAIN_COLUMNS = ("step", "tokens", "loss", "lr")  # every logged update
VAL_COLUMNS = ("step", "tokens", "val_loss", "val_bpb")  # the updates validation ran at


def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise GptpipeError(f"{path}: line {n} is not JSON ({exc.msg})") from None
    return records


def _write(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(columns)
        out.writerows([row[c] for c in columns] for row in rows)


def write_curves(metrics_jsonl: Path, folder: Path) -> None:
    """`folder`/train.csv and val.csv from the records of `metrics_jsonl`."""
    records = read_records(metrics_jsonl)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "train.csv", TRAIN_COLUMNS,
           [r for r in records if r.get("loss") is not None])
    _write(folder / "val.csv", VAL_COLUMNS, [r for r in records if r.get("val_loss") is not None])
