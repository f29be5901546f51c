"""The GLUE server archive: `glue-submission.zip` in the report folder, and a section listing it.

The server takes one zip of eleven TSV files (`index<TAB>prediction`, labels spelled as GLUE
spells them; `tasks.submission` writes each in its fine-tuning job). The archive takes every
file from one run per task: the `full` variant's seed with the best dev score on the task's
headline metric (ties: the lowest seed), as a GLUE submission is chosen, never by test.
AX (the diagnostic set) comes from the chosen MNLI run, whose model predicts it. Each file is
checked (header, row count, label words) before it goes in; files no run wrote are listed as
missing with the reason, and the archive holds the others. The zip's bytes depend only on the
files: entries sorted by name, fixed timestamps and permissions.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .. import tasks
from ..atomic import atomic_path
from ..errors import GptpipeError
from ..tasks.submission import HEADER
from . import render

ARCHIVE = "glue-submission.zip"
SEED_RULE = ("each task's file comes from its `full` run with the best dev score on the task's "
             "headline metric (ties: the lowest seed); AX from the chosen MNLI run")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record: no build time leaks in


@dataclass(frozen=True)
class ServerFile:
    """One file the GLUE server expects: its name, task, split and the task whose run writes it."""

    name: str
    task: str
    split: str
    run_task: str


def server_files() -> tuple[ServerFile, ...]:
    """The eleven files, in the leaderboard's order (CoLA.tsv ... WNLI.tsv, AX.tsv)."""
    out = []
    for name in tasks.GLUE_TASKS:
        spec = tasks.get(name)
        for split, file in spec.submission_files.items():
            out.append(ServerFile(file, spec.name, split, spec.predict_with or spec.name))
    return tuple(out)


@dataclass(frozen=True)
class Entry:
    """What became of one server file: in the archive (with its bytes) or missing, and why."""

    file: ServerFile
    run: Mapping | None  # the chosen run of `file.run_task`, if any
    data: bytes | None  # None: missing
    rows: int | None
    note: str


def _dev_score(run: Mapping) -> float:
    value = (run.get("headline") or {}).get("value")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf


def choose_runs(runs: Sequence[Mapping]) -> dict[str, Mapping]:
    """task -> the `full` run whose headline (dev) score is best; ties go to the lowest seed."""
    chosen: dict[str, Mapping] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        if run["variant"] != "full":
            continue
        best = chosen.get(run["task"])
        if best is None or _dev_score(run) > _dev_score(best):
            chosen[run["task"]] = run
    return chosen


def check_file(sf: ServerFile, data: bytes, where: Path) -> int:
    """Rows of a submission file after checking its header and label words; GptpipeError
    naming `where` and the line otherwise."""
    spec = tasks.get(sf.task)
    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != HEADER:
        raise GptpipeError(f"{where}:1: header is not {HEADER!r}")
    for n, line in enumerate(lines[1:], start=2):
        index, sep, label = line.partition("\t")
        if not sep or not index or not _is_label(spec, label):
            raise GptpipeError(f"{where}:{n}: {line!r} is not index<TAB>prediction with a "
                               f"{sf.task} label ({', '.join(spec.glue_labels) or 'a score'})")
    return len(lines) - 1


def _is_label(spec: tasks.TaskSpec, label: str) -> bool:
    if spec.kind != "regression":
        return label in spec.glue_labels
    try:
        return math.isfinite(float(label))
    except ValueError:
        return False


def _record(run: Mapping, sf: ServerFile) -> Mapping | None:
    for rec in run.get("submission") or []:
        if rec.get("file") == sf.name and rec.get("task", run["task"]) == sf.task:
            return rec
    return None


def _why_missing(run: Mapping | None, sf: ServerFile) -> str:
    if run is None:
        return f"no `full` run of {sf.run_task}"
    told = [n for n in run.get("notes") or [] if sf.split in n and
            (sf.task == run["task"] or sf.task in n)]
    return told[0] if told else f"the chosen {sf.run_task} run wrote no {sf.name}"


def collect(runs: Sequence[Mapping]) -> list[Entry]:
    """One entry per server file, in the server's order."""
    chosen = choose_runs(runs)
    entries = []
    for sf in server_files():
        run = chosen.get(sf.run_task)
        rec = _record(run, sf) if run else None
        if rec is None or not rec.get("complete", False):
            why = _why_missing(run, sf) if rec is None else (
                f"incomplete: {rec.get('rows')} of {rec.get('of')} rows")
            entries.append(Entry(sf, run, None, None, why))
            continue
        where = Path(run["file"]).parent / sf.name
        if not where.is_file():
            raise GptpipeError(f"{where}: missing, though {run['file']} lists it")
        data = where.read_bytes()
        rows = check_file(sf, data, where)
        if rows != rec.get("rows"):
            raise GptpipeError(f"{where}: {rows} rows, but {run['file']} says {rec.get('rows')}")
        published = tasks.get(sf.task).sizes.get(sf.split)
        note = "" if published in (None, rows) else f"the published test set has {published:,}"
        entries.append(Entry(sf, run, data, rows, note))
    return entries


def archive_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip of `files` (name -> bytes) whose bytes depend on nothing else: sorted names, fixed
    timestamps and permissions, deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, on every host, so the permissions below are read
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def write_archive(entries: Sequence[Entry], path: Path) -> Path:
    """Write the archive of the entries present to `path`, atomically; returns `path`."""
    files = {e.file.name: e.data for e in entries if e.data is not None}
    with atomic_path(path) as tmp:
        tmp.write_bytes(archive_bytes(files))
    return path


def _source(entry: Entry) -> str:
    run = entry.run
    if run is None:
        return "—"
    score = (run.get("headline") or {}).get("percent")
    dev = "—" if score is None else f"{score:.1f}"
    return f"{run['task']} seed {run['seed']} (dev {run['headline']['metric']} {dev})"


def table(entries: Sequence[Entry]) -> pl.DataFrame:
    rows = [{"File": e.file.name, "Task": e.file.task,
             "Status": "in archive" if e.data is not None else "missing",
             "Rows": "—" if e.rows is None else f"{e.rows:,}", "From": _source(e),
             "Note": e.note} for e in entries]
    return pl.DataFrame(rows, schema={c: pl.Utf8 for c in rows[0]}, orient="row")


def summary(entries: Sequence[Entry]) -> dict:
    """What report.json records about the archive."""
    return {"file": ARCHIVE, "seed_rule": SEED_RULE,
            "files": [{"file": e.file.name, "task": e.file.task, "in_archive": e.data is not None,
                       "rows": e.rows, "run": e.run["file"] if e.run else None, "note": e.note}
                      for e in entries],
            "missing": [e.file.name for e in entries if e.data is None]}


def section(entries: Sequence[Entry]) -> render.Section:
    missing = [e.file.name for e in entries if e.data is None]
    state = (f"It lacks {len(missing)} of the {len(entries)} files the server needs "
             f"({', '.join(missing)}), so the server would reject it as it is."
             if missing else "It holds every file the server needs.")
    return render.Section(
        "GLUE server archive", table=table(entries),
        text=(f"`{ARCHIVE}` beside this report bundles the test-set predictions for the GLUE "
              f"evaluation server: {SEED_RULE}. {state}"))

