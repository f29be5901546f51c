"""The GLUE server archive (report/glue_zip.py): built from small predictions written by
`tasks.submission`, as fine-tuning jobs write them; checked for the server's file names,
headers, row counts and label words, the missing files listed, and byte-for-byte determinism."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from gptpipe import tasks
from gptpipe.errors import GptpipeError
from gptpipe.report import glue_zip
from gptpipe.tasks.spec import Example
from gptpipe.tasks.submission import write_submission

SERVER_NAMES = ["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv",
                "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"]
ROWS = 7  # test examples per fake split
CAPPED = ("no submission for test: capped at 200 of 1063 examples "
          "(finetune.max_eval_examples: 0 predicts them all)")  # as finetune/data.py notes it


def _predictions(spec: tasks.TaskSpec, seed: int) -> list[int | float]:
    if spec.kind == "regression":
        return [round(0.7 * i + seed, 3) for i in range(ROWS)]
    return [(i + seed) % len(spec.glue_labels) for i in range(ROWS)]


def _job(root: Path, task: str, seed: int, dev: float | None, variant: str = "full",
         notes: tuple[str, ...] = (), write: bool = True) -> dict:
    """A finished job folder (its submission files and metrics.json) as `collect.load_runs`
    returns it; the MNLI job also writes AX.tsv, as the stage does."""
    folder = root / task / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    spec = tasks.get(task)
    records = []
    for companion in [spec] + [t for t in tasks.TASKS.values() if t.predict_with == task]:
        for split in companion.submission_files if write else ():
            examples = [Example(str(100 + i), ("a", "b"), None, None) for i in range(ROWS)]
            path = write_submission(companion, split, examples, _predictions(companion, seed),
                                    folder)
            records.append({"split": split, "file": path.name, "rows": ROWS, "of": ROWS,
                            "complete": True} | ({"task": companion.name}
                                                 if companion is not spec else {}))
    run = {"task": spec.name, "variant": variant, "seed": seed,
           "headline": {"split": "dev", "metric": spec.metrics[0], "value": dev,
                        "percent": None if dev is None else 100 * dev},
           "submission": records, "notes": list(notes)}
    (folder / "metrics.json").write_text(json.dumps(run))
    return {**run, "file": str(folder / "metrics.json")}


def _all_tasks(root: Path) -> list[dict]:
    trained = [t for t in tasks.GLUE_TASKS if tasks.get(t).train_split]
    return [_job(root, t, 0, 0.5) for t in trained]


def test_glue_zip_has_the_server_names_headers_rows_and_label_words(tmp_path):
    entries = glue_zip.collect(_all_tasks(tmp_path))
    path = glue_zip.write_archive(entries, tmp_path / "out" / glue_zip.ARCHIVE)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == sorted(SERVER_NAMES)
        for name in SERVER_NAMES:
            lines = zf.read(name).decode("utf-8").splitlines()
            assert lines[0] == "index\tprediction"
            assert len(lines) == 1 + ROWS
            assert [r.split("\t")[0] for r in lines[1:]] == [str(100 + i) for i in range(ROWS)]
            words = {r.split("\t")[1] for r in lines[1:]}
            if name == "STS-B.tsv":
                assert all(0.0 <= float(w) <= 5.0 for w in words)
            elif name in ("MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"):
                assert words == {"entailment", "neutral", "contradiction"}
            elif name in ("QNLI.tsv", "RTE.tsv"):
                assert words == {"entailment", "not_entailment"}
            else:
                assert words == {"0", "1"}
    summary = glue_zip.summary(entries)
    assert summary["missing"] == [] and [f["file"] for f in summary["files"]] == SERVER_NAMES
    ax = next(e for e in entries if e.file.name == "AX.tsv")
    assert ax.run["task"] == "MNLI" and ax.rows == ROWS  # AX comes from the MNLI model
    # Fewer rows than the published test set: said beside the file.
    assert ax.note == "the published test set has 1,104"


def test_glue_zip_lists_missing_tasks_and_takes_the_best_dev_seed(tmp_path):
    runs = [
        _job(tmp_path, "SST-2", 0, 0.61), _job(tmp_path, "SST-2", 1, 0.72),
        _job(tmp_path, "SST-2", 2, 0.72),  # a tie goes to the lower seed (1)
        _job(tmp_path, "SST-2", 3, 0.99, variant="no_aux"),  # ablations never submit
        _job(tmp_path, "WNLI", 0, None),  # an undefined score still submits
        _job(tmp_path, "CoLA", 0, 0.1, write=False,
             notes=(CAPPED,)),
    ]
    entries = {e.file.name: e for e in glue_zip.collect(runs)}
    assert entries["SST-2.tsv"].run["seed"] == 1 and entries["SST-2.tsv"].data is not None
    assert entries["WNLI.tsv"].data is not None
    assert entries["CoLA.tsv"].data is None
    assert entries["CoLA.tsv"].note.startswith("no submission for test: capped at 200 of 1063")
    assert entries["MNLI-m.tsv"].note == "no `full` run of MNLI"
    assert entries["AX.tsv"].note == "no `full` run of MNLI"
    missing = [n for n in SERVER_NAMES if n not in ("SST-2.tsv", "WNLI.tsv")]
    assert glue_zip.summary(list(entries.values()))["missing"] == missing
    section = glue_zip.section(list(entries.values()))
    shown = section.table.to_dicts()
    assert [r["Status"] for r in shown].count("in archive") == 2
    assert next(r for r in shown if r["File"] == "SST-2.tsv")["From"] == \
        "SST-2 seed 1 (dev accuracy 72.0)"
    assert f"lacks 9 of the 11 files the server needs ({', '.join(missing)})" in section.text
    path = glue_zip.write_archive(list(entries.values()), tmp_path / glue_zip.ARCHIVE)
    assert zipfile.ZipFile(path).namelist() == ["SST-2.tsv", "WNLI.tsv"]


def test_glue_zip_bytes_depend_only_on_the_files(tmp_path):
    first = glue_zip.archive_bytes({"b.tsv": b"index\tprediction\n0\t1\n", "a.tsv": b"x\n"})
    again = glue_zip.archive_bytes({"a.tsv": b"x\n", "b.tsv": b"index\tprediction\n0\t1\n"})
    assert first == again
    infos = zipfile.ZipFile(io.BytesIO(first)).infolist()
    assert [i.filename for i in infos] == ["a.tsv", "b.tsv"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    # Two builds of the same runs, made at different times, give the same archive.
    one = glue_zip.collect(_all_tasks(tmp_path / "one"))
    two = glue_zip.collect(_all_tasks(tmp_path / "two"))
    a = glue_zip.write_archive(one, tmp_path / "a.zip").read_bytes()
    b = glue_zip.write_archive(two, tmp_path / "b.zip").read_bytes()
    assert a == b
    assert not list(tmp_path.glob(".*.tmp*"))  # written atomically: no temporary left


@pytest.mark.parametrize("text, message", [
    ("index\tlabel\n0\t1\n", r"SST-2.tsv:1: header is not 'index\\tprediction'"),
    ("index\tprediction\n0\tpositive\n", r"SST-2.tsv:2: '0\\tpositive' is not .* SST-2 label"),
    ("index\tprediction\n0\n", r"SST-2.tsv:2: '0' is not index<TAB>prediction"),
])
def test_glue_zip_refuses_a_file_the_server_would_reject(tmp_path, text, message):
    run = _job(tmp_path, "SST-2", 0, 0.5)
    (Path(run["file"]).parent / "SST-2.tsv").write_text(text)
    with pytest.raises(GptpipeError, match=message):
        glue_zip.collect([run])


def test_glue_zip_in_the_report_stage(tmp_path):
    from test_report import _run, build_run

    paths = build_run(tmp_path)
    wnli = paths["finetune"][-1]
    examples = [Example(str(i), ("a", "b"), None, None) for i in range(ROWS)]
    write_submission(tasks.get("WNLI"), "test", examples, [i % 2 for i in range(ROWS)], wnli)
    run = json.loads((wnli / "metrics.json").read_text())
    run["submission"] = [{"split": "test", "file": "WNLI.tsv", "rows": ROWS, "of": ROWS,
                          "complete": True}]
    (wnli / "metrics.json").write_text(json.dumps(run))
    doc = _run(paths, repo=tmp_path)
    archive = paths["output"] / glue_zip.ARCHIVE
    assert zipfile.ZipFile(archive).namelist() == ["WNLI.tsv"]
    assert doc["glue_archive"]["missing"] == [n for n in SERVER_NAMES if n != "WNLI.tsv"]
    md = (paths["output"] / "report.md").read_text(encoding="utf-8")
    assert "## GLUE server archive" in md and "best dev score" in md
    assert "| SST-2.tsv | SST-2 | missing | — | SST-2 seed 1 (dev accuracy 58.0) |" in md
    assert "| AX.tsv | AX | missing | — | — | no `full` run of MNLI |" in md
