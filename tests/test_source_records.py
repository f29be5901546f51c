"""Every fine-tuning source's checksum names a second record that agrees, or says why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptpipe.config import FetchConfig, Source, load_params, validate_params
from gptpipe.report.provenance import declared_inputs

REPO = Path(__file__).resolve().parents[1]

# Task sources whose sha256 no second record confirms, each with the reason. A source listed
# here must not also claim a `checked` record, so the list cannot outlive the reason.
UNCHECKED_ON_PURPOSE = {
    "storycloze-val": "distributed by its authors on request; only the sample's copy is known",
    "storycloze-test": "distributed by its authors on request; only the sample's copy is known",
}


def _shipped_sources() -> tuple[Source, ...]:
    return validate_params(load_params(REPO / "params.yaml"))["fetch"].sources


def test_every_task_source_is_checked_or_unchecked_on_purpose():
    tasks = {s.name: s for s in _shipped_sources() if s.role == "task"}
    assert set(UNCHECKED_ON_PURPOSE) <= set(tasks), "a listed source is no longer declared"
    missing = [n for n, s in tasks.items() if s.checked is None and n not in UNCHECKED_ON_PURPOSE]
    assert not missing, f"task sources without a second record or a reason: {missing}"
    stale = [n for n in UNCHECKED_ON_PURPOSE if tasks[n].checked is not None]
    assert not stale, f"listed as unchecked but params name a record: {stale}"


def test_downloaded_task_sources_name_a_record_not_a_sample():
    """A source fetched from a URL is checked against a record of that URL, not our sample."""
    for s in _shipped_sources():
        if s.role == "task" and s.url and s.checked is not None:
            assert "shared sample" not in s.checked, s.name


def test_blank_checked_is_refused():
    with pytest.raises(ValueError, match="'checked'"):
        Source(name="x", path="x", url="http://e/x", checksum="sha256:" + "0" * 64, checked=" ")


def test_report_inputs_show_the_record_or_unchecked():
    sums = "sha256:" + "0" * 64
    fetch = FetchConfig(sources=(
        Source(name="a", path="a", url="http://e/a", checksum=sums, checked="rec a1b2c3d"),
        Source(name="b", path="b", url="http://e/b", checksum=sums)))
    rows = {r["name"]: r["checked"] for r in declared_inputs(fetch)}
    assert rows == {"a": "rec a1b2c3d", "b": "unchecked"}
