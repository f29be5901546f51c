"""GLUE submission files: names, header, label spelling, one row per real test example."""

from __future__ import annotations

import pytest

from gptpipe import tasks
from gptpipe.errors import GptpipeError
from gptpipe.tasks.loaders import load_split
from gptpipe.tasks.spec import Example
from gptpipe.tasks.submission import submission_rows, write_submission


def test_the_registry_names_every_glue_submission_file():
    names = sorted(f for spec in tasks.TASKS.values() for f in spec.submission_files.values())
    assert names == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv",
                            "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv",
                            "AX.tsv"])
    assert tasks.get("MNLI").submission_files == {"test_matched": "MNLI-m.tsv",
                                                  "test_mismatched": "MNLI-mm.tsv"}
    assert tasks.get("AX").predict_with == "MNLI"


def _read(path):
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # ends with a newline
    return lines[0], [line.split("\t") for line in lines[1:-1]]


@pytest.mark.parametrize("name, spelled", [
    ("RTE", {"entailment", "not_entailment"}),
    ("QNLI", {"entailment", "not_entailment"}),
    ("CoLA", {"0", "1"}),
    ("WNLI", {"0", "1"}),
])
def test_real_test_sets(shared_data, tmp_path, name, spelled):
    spec = tasks.get(name)
    examples, _ = load_split(spec, shared_data, "test")
    predictions = [i % 2 for i in range(len(examples))]
    path = write_submission(spec, "test", examples, predictions, tmp_path)
    assert path == tmp_path / f"{name}.tsv"
    header, rows = _read(path)
    assert header == "index\tprediction"
    assert [r[0] for r in rows] == [str(i) for i in range(len(examples))]  # GLUE's index column
    assert {r[1] for r in rows} == spelled
    assert rows[0][1] == spec.glue_labels[0] and rows[1][1] == spec.glue_labels[1]
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.tsv"]  # no temp file left


def test_stsb_writes_scores(shared_data, tmp_path):
    spec = tasks.get("STS-B")
    examples, _ = load_split(spec, shared_data, "test")
    path = write_submission(spec, "test", examples, [i / 1000 for i in range(1379)], tmp_path)
    _, rows = _read(path)
    assert len(rows) == 1_379 and rows[0] == ["0", "0"] and rows[1234] == ["1234", "1.234"]


def test_mnli_writes_matched_and_mismatched(tmp_path):
    spec = tasks.get("MNLI")
    examples = [Example(str(i), ("p", "h"), None, None) for i in range(3)]
    m_path = write_submission(spec, "test_matched", examples, [0, 1, 2], tmp_path)
    mm_path = write_submission(spec, "test_mismatched", examples, [2, 2, 2], tmp_path)
    assert (m_path.name, mm_path.name) == ("MNLI-m.tsv", "MNLI-mm.tsv")
    assert _read(m_path)[1] == [["0", "entailment"], ["1", "neutral"], ["2", "contradiction"]]


def test_bad_predictions_leave_no_file(tmp_path):
    spec = tasks.get("RTE")
    examples = [Example(str(i), ("a", "b"), None, None) for i in range(2)]
    with pytest.raises(GptpipeError, match="RTE: 1 predictions for 2 test examples"):
        write_submission(spec, "test", examples, [0], tmp_path)
    with pytest.raises(GptpipeError, match=r"prediction 2 for test example '1' is not a class "
                                           r"index in 0\.\.1"):
        write_submission(spec, "test", examples, [0, 2], tmp_path)
    with pytest.raises(GptpipeError, match="appears twice"):
        submission_rows(spec, [examples[0], examples[0]], [0, 1])
    with pytest.raises(GptpipeError, match="is nan"):
        write_submission(tasks.get("STS-B"), "test", examples, [1.0, float("nan")], tmp_path)
    with pytest.raises(GptpipeError, match="SNLI has no GLUE submission file for split 'test'"):
        write_submission(tasks.get("SNLI"), "test", examples, [0, 1], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_rewriting_replaces_the_file(tmp_path):
    spec = tasks.get("SST-2")
    examples = [Example("0", ("x",), None, None)]
    write_submission(spec, "test", examples, [0], tmp_path)
    path = write_submission(spec, "test", examples, [1], tmp_path)
    assert _read(path)[1] == [["0", "1"]]
