"""Task registry and loaders: the real files of the shared sample, the official formats that are
not in it (written here), and every bad input the loaders must name."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gptpipe import tasks
from gptpipe.errors import GptpipeError
from gptpipe.tasks.loaders import holdout, load_split
from gptpipe.tasks.spec import Example, TaskSpec

QQP_SUBSET = "train_subset.tsv"  # a name for a copy laid out differently (not a real file)
MRPC_GLUE = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}


def _one_line_error(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- registry


def test_registry_covers_the_papers_tasks_and_glue():
    assert set(tasks.TASKS) == {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE",
                                "WNLI", "AX", "SNLI", "SciTail", "RACE", "StoryCloze"}
    assert tasks.get("sst2") is tasks.TASKS["SST-2"] and tasks.get("storycloze").n_choices == 2
    with pytest.raises(GptpipeError, match="unknown task 'BoolQ'"):
        tasks.get("BoolQ")
    kinds = {name: spec.kind for name, spec in tasks.TASKS.items()}
    assert kinds["STS-B"] == "regression" and kinds["MRPC"] == kinds["QQP"] == "similarity"
    assert kinds["RACE"] == "multiple_choice" and kinds["CoLA"] == "single"
    # Reported splits: dev for GLUE, the labelled test sets elsewhere.
    assert tasks.get("MNLI").eval_splits == ("dev_matched", "dev_mismatched")
    for name in ("SNLI", "SciTail", "RACE", "StoryCloze"):
        assert tasks.get(name).eval_splits == ("test",) and not tasks.get(name).unlabelled_splits
    assert tasks.get("StoryCloze").train_split == "val"
    assert len({*tasks.TASKS.values()}) == len(tasks.TASKS)  # specs hash (usable as keys)
    with pytest.raises(TypeError):
        tasks.get("RTE").files["train"] = "other.tsv"  # type: ignore[index]


def test_spec_rejects_inconsistent_definitions():
    base = dict(name="X", kind="pair", loader="rte", data_dir="d", files={"train": "t.tsv"},
                label_names=("a", "b"), metrics=("accuracy",), train_split="train", eval_splits=())
    TaskSpec(**base)
    with pytest.raises(ValueError, match="no file for split"):
        TaskSpec(**{**base, "eval_splits": ("dev",)})
    with pytest.raises(ValueError, match="unknown metric"):
        TaskSpec(**{**base, "metrics": ("bleu",)})
    with pytest.raises(ValueError, match="n_choices"):
        TaskSpec(**{**base, "kind": "multiple_choice"})
    with pytest.raises(ValueError, match="regression"):
        TaskSpec(**{**base, "kind": "regression"})


def test_with_files_overrides_one_split_only():
    spec = tasks.get("QQP").with_files(train=QQP_SUBSET)
    assert spec.files["train"] == QQP_SUBSET and spec.files["dev"] == "dev.tsv"
    assert tasks.get("QQP").files["train"] == "train.tsv"  # the registry entry is untouched
    assert spec.path("/data", "train") == Path("/data/glue/QQP") / QQP_SUBSET


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name, split, n, labels", [
    ("CoLA", "train", 8_551, {0: 2_528, 1: 6_023}),
    ("CoLA", "dev", 1_043, {0: 322, 1: 721}),  # no final newline
    ("CoLA", "test", 1_063, None),
    ("SST-2", "dev", 872, {0: 428, 1: 444}),
    ("SST-2", "test", 1_821, None),
    ("STS-B", "dev", 1_500, "float"),
    ("STS-B", "test", 1_379, None),
    ("QNLI", "dev", 5_463, {0: 2_702, 1: 2_761}),
    ("QNLI", "test", 5_463, None),
    ("RTE", "train", 2_490, {0: 1_249, 1: 1_241}),
    ("RTE", "dev", 277, {0: 146, 1: 131}),
    ("RTE", "test", 3_000, None),
    ("WNLI", "train", 635, {0: 323, 1: 312}),
    ("WNLI", "dev", 71, {0: 40, 1: 31}),
    ("WNLI", "test", 146, None),
])
def test_glue_files(shared_data, name, split, n, labels):
    spec = tasks.get(name)
    examples, report = load_split(spec, shared_data, split)
    assert report.rows == report.kept == len(examples) == n == spec.sizes[split]
    assert not report.malformed and not report.dropped
    assert len({ex.id for ex in examples}) == n
    got = Counter(ex.label for ex in examples)
    if labels is None:  # GLUE test sets: labels hidden
        assert set(got) == {None}
        assert [ex.id for ex in examples] == [str(i) for i in range(n)]  # GLUE's index column
    elif labels == "float":
        assert all(isinstance(ex.label, float) and 0.0 <= ex.label <= 5.0 for ex in examples)
    else:
        assert dict(got) == labels
    assert all(t and t == t.strip() for ex in examples for t in ex.texts)


def test_stsb_train_scores_are_floats(shared_data):
    examples, _ = load_split(tasks.get("STS-B"), shared_data, "train")
    assert len(examples) == 5_749
    assert examples[0].texts == ("A plane is taking off.", "An air plane is taking off.")
    assert examples[0].label == 5.0 and examples[1].label == 3.8


def test_mrpc_from_msrp_equals_glues_files(shared_data):
    """GLUE's MRPC train/dev come from the MSRP train file split by GLUE's dev id list; the
    loader applies that rule, so the raw file and GLUE's train.tsv/dev.tsv (BOM) agree."""
    raw, glue = tasks.get("MRPC"), tasks.get("MRPC").with_files(**MRPC_GLUE)
    for split, n, labels in (("train", 3_668, {0: 1_194, 1: 2_474}),
                             ("dev", 408, {0: 129, 1: 279})):
        from_raw, raw_report = load_split(raw, shared_data, split)
        from_glue, glue_report = load_split(glue, shared_data, split)
        assert from_raw == from_glue and len(from_raw) == n
        assert dict(Counter(ex.label for ex in from_raw)) == labels
        assert raw_report.rows == 4_076 and raw_report.dropped == {"other_split": 4_076 - n}
        assert glue_report.dropped == {"other_split": 0}
    first = load_split(glue, shared_data, "train")[0][0]
    assert first.id == "702876-702977" and first.label == 1  # the BOM did not eat "Quality"
    test, _ = load_split(glue, shared_data, "test")
    assert len(test) == 1_725 and test[0].id == "0" and test[0].label is None


def test_qqp_sample_has_one_malformed_row(shared_data):
    """The sample's QQP train.tsv: GLUE's header, then 23,497 real rows, the first malformed."""
    spec = tasks.get("QQP")
    examples, report = load_split(spec, shared_data, "train")
    assert (report.rows, report.kept) == (23_497, 23_496)
    (bad,) = report.malformed
    assert bad.line == 2 and bad.file.endswith("QQP/train.tsv") and "5 tab-separated" in bad.why
    assert dict(Counter(ex.label for ex in examples)) == {0: 14_749, 1: 8_747}
    assert examples[0].id == "360472"
    # The same file fails when no malformed row is tolerated.
    with pytest.raises(GptpipeError, match=r"train\.tsv:2: 1 of 23497 records malformed") as e:
        load_split(spec, shared_data, "train", max_malformed_fraction=0.0)
    _one_line_error(e)


def test_snli_samples_drop_gold_less_rows(shared_data):
    spec = tasks.get("SNLI")  # the sample's dev/test: the official files' first lines
    dev, report = load_split(spec, shared_data, "dev")
    assert (report.rows, report.kept, dict(report.dropped)) == (1_289, 1_273, {"no_gold_label": 16})
    assert dev[0].id == "4705552913.jpg#2r1n" and dev[0].label == 1  # neutral
    test, report = load_split(spec, shared_data, "test")  # SNLI's test set is labelled
    assert (report.rows, report.kept) == (1_277, 1_254) and None not in {ex.label for ex in test}


@pytest.mark.parametrize("split", ["val", "test"])
def test_story_cloze(shared_data, split):
    examples, report = load_split(tasks.get("StoryCloze"), shared_data, split)
    assert report.rows == report.kept == 1_871 == tasks.get("StoryCloze").sizes[split]
    assert all(len(ex.texts) == 1 and len(ex.choices) == 2 and ex.label in (0, 1)
               for ex in examples)
    if split == "val":
        ex = examples[0]
        assert ex.id == "138d5bfb-05cc-41e3-bf2c-fa85ebad14e2" and ex.label == 0
        assert ex.texts[0].startswith("Rick grew up in a troubled household. He never found")
        assert ex.choices == ("He is happy now.", "He joined a gang.")


def test_holdout_is_deterministic_exact_and_order_free(shared_data):
    examples, _ = load_split(tasks.get("StoryCloze"), shared_data, "val")
    rest, held = holdout(examples, 0.2)
    assert (len(rest), len(held)) == (1_497, 374)  # the original code's Story Cloze split
    assert {ex.id for ex in rest}.isdisjoint(ex.id for ex in held)
    held_ids = {ex.id for ex in held}
    assert rest == [ex for ex in examples if ex.id not in held_ids]  # input order kept
    rest2, held2 = holdout(list(reversed(examples)), 0.2)
    assert {ex.id for ex in held2} == {ex.id for ex in held}
    assert {ex.id for ex in holdout(examples, 0.2, salt="other")[1]} != {ex.id for ex in held}
    qnli, _ = load_split(tasks.get("QNLI"), shared_data, "dev")
    assert len(holdout(qnli, 0.2)[1]) == 1_093


# --------------------------------------------------------------------------- formats not in sample


def _write(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((end.join(lines) + end).encode("utf-8"))
    return path


MNLI_TRAIN_HEAD = "\t".join([
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"])


def _mnli_row(i: int, n_labels: int, gold: str | None) -> str:
    labels = [gold] * n_labels + [gold] if gold else []
    return "\t".join([str(i), "31193", f"{i}n", "government", "( ( x ) )", "( y )", "(ROOT x)",
                      "(ROOT y)", f"Premise {i} \"quoted", f"Hypothesis {i}", *labels])


def test_mnli_glue_format(tmp_path):
    root, d = tmp_path, tmp_path / "glue/MNLI"
    _write(d / "train.tsv", [MNLI_TRAIN_HEAD] + [_mnli_row(i, 1, g) for i, g in
                                                 enumerate(["neutral", "contradiction"])])
    dev_head = MNLI_TRAIN_HEAD.replace("label1\t", "label1\tlabel2\tlabel3\tlabel4\tlabel5\t")
    _write(d / "dev_matched.tsv", [dev_head, _mnli_row(0, 5, "entailment")])
    _write(d / "dev_mismatched.tsv", [dev_head, _mnli_row(7, 5, "contradiction")])
    test_head = "\t".join(MNLI_TRAIN_HEAD.split("\t")[:10])
    _write(d / "test_matched.tsv", [test_head, _mnli_row(0, 0, None), _mnli_row(1, 0, None)])
    spec = tasks.get("MNLI")
    train, _ = load_split(spec, root, "train")
    assert [ex.label for ex in train] == [1, 2]  # label order: entailment, neutral, contradiction
    assert train[0].texts == ('Premise 0 "quoted', "Hypothesis 0") and train[0].id == "0"
    assert load_split(spec, root, "dev_matched")[0][0].label == 0
    assert load_split(spec, root, "dev_mismatched")[0][0].id == "7"
    test, _ = load_split(spec, root, "test_matched")
    assert [ex.label for ex in test] == [None, None]


def test_full_qqp_with_header_and_a_stray_carriage_return(tmp_path):
    d = tmp_path / "glue/QQP"
    _write(d / "train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                             "5\t1\t2\tWhy is the sky\rblue?\tWhat makes the sky blue?\t1",
                             "9\t3\t4\tHow?\tWhy?\t0"])
    _write(d / "test.tsv", ["id\tquestion1\tquestion2", "0\tA?\tB?", "1\tC?\tD?"])
    train, report = load_split(tasks.get("QQP"), tmp_path, "train")
    assert report.rows == 2 and [ex.id for ex in train] == ["5", "9"]
    assert train[0].texts[0] == "Why is the sky\rblue?" and train[0].label == 1
    test, _ = load_split(tasks.get("QQP"), tmp_path, "test")
    assert [(ex.id, ex.label) for ex in test] == [("0", None), ("1", None)]


def test_scitail_tsv_format(tmp_path):
    _write(tmp_path / "other/SciTail/tsv_format/scitail_1.0_train.tsv",
           ["Plants make food.\tPlants produce their food.\tentails",
            "Rocks are hard.\tRocks are soft.\tneutral"], end="\r\n")
    examples, _ = load_split(tasks.get("SciTail"), tmp_path, "train")
    assert [(ex.id, ex.label) for ex in examples] == [("0", 0), ("1", 1)]
    assert examples[1].texts == ("Rocks are hard.", "Rocks are soft.")


def _race_file(path: Path, n_questions: int, options: int = 4, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"id": path.name, "article": f"Article of {path.name}.",
              "questions": [f"Q{q}?" for q in range(n_questions)],
              "options": [[f"o{q}{k}" for k in range(options)] for q in range(n_questions)],
              "answers": ["ABCD"[q % 4] for q in range(n_questions)], **extra}
    path.write_text(json.dumps(record), encoding="utf-8")


def test_race_folder_layout(tmp_path):
    d = tmp_path / "other/RACE/test"
    _race_file(d / "middle/10.txt", 1)
    _race_file(d / "middle/2.txt", 2)
    _race_file(d / "high/1.txt", 1)
    examples, report = load_split(tasks.get("RACE"), tmp_path, "test")
    assert report.rows == 4
    assert [ex.id for ex in examples] == ["middle/2.txt#0", "middle/2.txt#1", "middle/10.txt#0",
                                          "high/1.txt#0"]
    ex = examples[1]
    assert ex.texts == ("Article of 2.txt.", "Q1?") and ex.choices == ("o10", "o11", "o12", "o13")
    assert ex.label == 1 and ex.group == "middle" and examples[3].group == "high"


def test_mrpc_raw_test_file_is_read_unlabelled_by_row(tmp_path):
    d = tmp_path / "glue/MRPC"
    _write(d / "msr_paraphrase_test.txt",
           ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t11\t12\tA.\tB.",
            "0\t13\t14\tC.\tD."])
    test, _ = load_split(tasks.get("MRPC"), tmp_path, "test")
    assert [(ex.id, ex.label, ex.texts) for ex in test] == [("0", None, ("A.", "B.")),
                                                             ("1", None, ("C.", "D."))]


# --------------------------------------------------------------------------- bad inputs


def _rte(tmp_path: Path, rows: list[str], header: str = "index\tsentence1\tsentence2\tlabel"):
    return _write(tmp_path / "glue/RTE/train.tsv", [header] + rows)


def test_unknown_label_names_file_and_line(tmp_path):
    _rte(tmp_path, ["0\tA.\tB.\tentailment", "1\tC.\tD.\tmaybe"])
    with pytest.raises(GptpipeError, match=r"RTE/train\.tsv:3: unknown label 'maybe' \(expected "
                                           r"one of entailment, not_entailment\)") as e:
        load_split(tasks.get("RTE"), tmp_path, "train")
    _one_line_error(e)


def test_unparsable_regression_label(tmp_path):
    _write(tmp_path / "glue/STS-B/train.tsv",
           ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
            "\tscore",
            "0\tg\tf\t2012\t1\tnone\tnone\tA.\tB.\t4.2",
            "1\tg\tf\t2012\t1\tnone\tnone\tA.\tB.\tnan"])
    with pytest.raises(GptpipeError, match=r"train\.tsv:3: unknown label 'nan' \(expected a num"):
        load_split(tasks.get("STS-B"), tmp_path, "train")


def test_missing_column_names_file(tmp_path):
    _rte(tmp_path, ["0\tA.\tB."], header="index\tsentence1\tsentence2")
    with pytest.raises(GptpipeError, match=r"train\.tsv:1: missing column 'label' \(header has: "
                                           r"index, sentence1, sentence2\)") as e:
        load_split(tasks.get("RTE"), tmp_path, "train")
    _one_line_error(e)
    _write(tmp_path / "glue/SST-2/dev.tsv", ["text\tlabel", "good\t1"])
    with pytest.raises(GptpipeError, match=r"SST-2/dev\.tsv:1: missing header"):
        load_split(tasks.get("SST-2"), tmp_path, "dev")


@pytest.mark.parametrize("content", ["", "index\tsentence1\tsentence2\tlabel\n"])
def test_empty_split_is_an_error(tmp_path, content):
    path = tmp_path / "glue/RTE/dev.tsv"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GptpipeError, match=r"RTE/dev\.tsv: no examples in this split"):
        load_split(tasks.get("RTE"), tmp_path, "dev")


def test_missing_file_names_task_and_split(tmp_path):
    with pytest.raises(GptpipeError, match=r"glue/QNLI/train\.tsv: task QNLI split 'train' not"):
        load_split(tasks.get("QNLI"), tmp_path, "train")


def test_malformed_share_over_threshold(tmp_path):
    rows = [f"{i}\tS{i}.\tT{i}.\tentailment" for i in range(8)]
    rows[2] = "2\tS2.  T2.\tentailment"  # a lost tab
    rows[5] = "5\tS5.\tT5.\tentail\tment"  # an extra one
    _rte(tmp_path, rows)
    with pytest.raises(GptpipeError, match=r"train\.tsv:4: 2 of 8 records malformed .*first: 3 "
                                           r"tab-separated fields, expected 4") as e:
        load_split(tasks.get("RTE"), tmp_path, "train")
    _one_line_error(e)
    examples, report = load_split(tasks.get("RTE"), tmp_path, "train", max_malformed_fraction=0.25)
    assert len(examples) == 6 and [m.line for m in report.malformed] == [4, 7]
    assert report.rows == report.kept + len(report.malformed)


def test_undecodable_row_is_malformed_not_fatal(tmp_path):
    path = _rte(tmp_path, [f"{i}\tS.\tT.\tentailment" for i in range(3)])
    path.write_bytes(path.read_bytes() + b"3\tbad \xff byte\tT.\tentailment\n")
    examples, report = load_split(tasks.get("RTE"), tmp_path, "train", max_malformed_fraction=0.5)
    assert len(examples) == 3 and report.malformed[0].line == 5
    assert "not UTF-8" in report.malformed[0].why


def test_duplicate_ids_are_an_error(tmp_path):
    _rte(tmp_path, ["0\tA.\tB.\tentailment", "0\tC.\tD.\tentailment"])
    with pytest.raises(GptpipeError, match=r"train\.tsv:3: duplicate id '0' \(first at line 2\)"):
        load_split(tasks.get("RTE"), tmp_path, "train")


def test_snli_bad_lines(tmp_path):
    good = {"pairID": "p0", "sentence1": "A.", "sentence2": "B.", "gold_label": "entailment"}
    lines = [json.dumps({**good, "pairID": f"p{i}"}) for i in range(5)]
    lines[1] = "{not json"
    path = _write(tmp_path / "other/SNLI/snli_1.0_train.jsonl", lines)
    examples, report = load_split(tasks.get("SNLI"), tmp_path, "train", max_malformed_fraction=0.2)
    assert len(examples) == 4 and report.malformed[0].line == 2
    lines[1] = json.dumps({k: v for k, v in good.items() if k != "gold_label"})
    _write(path, lines)
    with pytest.raises(GptpipeError, match=r"snli_1\.0_train\.jsonl:2: missing field 'gold_label'"):
        load_split(tasks.get("SNLI"), tmp_path, "train")


def test_race_bad_articles(tmp_path):
    d = tmp_path / "other/RACE/dev"
    _race_file(d / "high/1.txt", 3)
    _race_file(d / "high/2.txt", 1, options=3)  # a question with 3 options
    examples, report = load_split(tasks.get("RACE"), tmp_path, "dev", max_malformed_fraction=0.3)
    assert len(examples) == 3 and report.malformed[0].file.endswith("high/2.txt")
    _race_file(d / "high/3.txt", 1, answers=None)
    (d / "high/3.txt").write_text('{"article": "a", "questions": [], "options": []}')
    with pytest.raises(GptpipeError, match=r"high/3\.txt: missing field 'answers'"):
        load_split(tasks.get("RACE"), tmp_path, "dev", max_malformed_fraction=0.3)
    _write(tmp_path / "other/RACE/train", ["x"])
    with pytest.raises(GptpipeError, match=r"RACE/train: not a folder"):
        load_split(tasks.get("RACE"), tmp_path, "train")


def test_story_cloze_missing_column(tmp_path):
    spec = tasks.get("StoryCloze")
    path = spec.path(tmp_path, "val")
    _write(path, ["InputStoryid,InputSentence1,InputSentence2", "x,a,b"])
    with pytest.raises(GptpipeError, match=r"ALL_val\.csv:1: missing column 'InputSentence3'"):
        load_split(spec, tmp_path, "val")


def test_example_is_frozen():
    ex = Example("1", ("a",), None, 0)
    with pytest.raises(AttributeError):
        ex.label = 1  # type: ignore[misc]
