"""The pre-training corpus: enwiki-20200501's 59 parts, `fetch.corpus` per preset, the jobs
they become (Snakemake and DVC), resumable downloads of big parts, and a part without index
through ingest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from workflow_projects import job_counts, project_copy, snakemake

from gptpipe import dvcyaml
from gptpipe import workflow as gw
from gptpipe.config import (
    FetchConfig,
    Source,
    build,
    load_params,
    resolve_section,
    validate_params,
)
from gptpipe.corpora import CORPORA, corpus_file, part_specs
from gptpipe.errors import ConfigError, GptpipeError
from gptpipe.fetch.download import Http
from gptpipe.fetch.sources import fetch_source, select

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")
ENWIKI = "enwiki-20200501"
FAST = Http(timeout_s=5.0, retries=2, backoff_s=0.01)
SINGLE = "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def fetch_cfg(scale: str, **fetch) -> FetchConfig:
    return resolve_section({**PARAMS, "scale": scale,
                            "fetch": {**PARAMS["fetch"], **fetch}}, "fetch")


# --------------------------------------------------------------------------- the corpus file


def test_enwiki_20200501_parts_cover_every_page_id_once():
    """59 parts whose pPpQ ranges tile page ids 1 to 63,833,989, every sha256 distinct, sizes
    adding up to Hugging Face's download size less dumpstatus.json (478,807 bytes)."""
    parts = part_specs(ENWIKI)
    assert len(parts) == 59
    ranges = []
    for p in parts:
        m = re.fullmatch(r"wikipedia/enwiki-20200501/enwiki-20200501-pages-articles-multistream"
                         r"\d+\.xml-p(\d+)p(\d+)\.bz2", p["path"])
        assert m, p["path"]
        ranges.append((int(m.group(1)), int(m.group(2))))
    ranges.sort()
    assert ranges[0][0] == 1 and ranges[-1][1] == 63_833_989
    for (_, last), (first, _) in zip(ranges, ranges[1:]):
        assert first == last + 1, (last, first)  # no gap, no overlap
    assert all(first <= last for first, last in ranges)
    assert len({p["checksum"] for p in parts}) == 59
    assert sum(p["size"] for p in parts) == 18_241_319_609 - 478_807


def test_every_packaged_corpus_is_selectable_and_shipped():
    hints = typing.get_type_hints(FetchConfig)
    assert set(typing.get_args(hints["corpus"])) == {"sample", *CORPORA}
    assert all(corpus_file(name).is_file() for name in CORPORA)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "corpora/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["gptpipe.fetch"]


# --------------------------------------------------------------------------- choosing it


def test_presets_choose_the_corpus():
    for scale in ("tiny", "micro"):
        cfg = fetch_cfg(scale)
        assert cfg.corpus == "sample"
        assert [s.name for s in cfg.dump_parts] == ["enwiki-sample"]
        assert cfg.active_sources == cfg.sources
    gpt1 = fetch_cfg("gpt1")
    assert gpt1.corpus == ENWIKI and len(gpt1.dump_parts) == 59
    names = [s.name for s in select(gpt1)]
    assert "enwiki-sample" not in names and len(names) == len(gpt1.sources) - 1 + 59
    part = gpt1.dump_parts[0]
    assert part.index_path is None and part.size == 186_241_262 and part.role == "dump"
    assert gpt1.source(part.name) == part
    assert gpt1.source("enwiki-sample").role == "dump"  # still there for `--only`
    with pytest.raises(ConfigError, match="no source named 'x' in fetch.sources or corpus"):
        gpt1.source("x")
    assert fetch_cfg("tiny", corpus=ENWIKI).dump_parts == gpt1.dump_parts  # per-file override


def test_dump_base_url_moves_every_part():
    default = fetch_cfg("gpt1").dump_parts
    moved = fetch_cfg("gpt1", dump_base_url="https://example.org/dumps/enwiki/20200501/")
    for a, b in zip(default, moved.dump_parts):
        file = a.path.rsplit("/", 1)[1]
        assert a.url == f"https://dumps.wikimedia.org/enwiki/20200501/{file}"
        assert b.url == f"https://example.org/dumps/enwiki/20200501/{file}"
        assert (a.path, a.checksum, a.size) == (b.path, b.checksum, b.size)
    with pytest.raises(ConfigError, match="fetch: dump_base_url 'example.org'"):
        fetch_cfg("gpt1", dump_base_url="example.org")
    with pytest.raises(ConfigError, match="fetch.corpus: 'enwiki-2016' is not one of"):
        fetch_cfg("gpt1", corpus="enwiki-2016")


def test_params_yaml_lists_the_new_knobs_as_null():
    assert PARAMS["fetch"]["corpus"] is None and PARAMS["fetch"]["dump_base_url"] is None


def test_the_corpus_is_mirrored_only_when_selected_or_asked_for(tmp_path):
    """The 18 GB are not in a tiny mirror; `--corpus` asks for them (here from an upstream
    mirror that lacks them: the error names the first part, and nothing is downloaded)."""
    assert not any(s.name.startswith(ENWIKI) for s in select(fetch_cfg("tiny")))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"scale": "tiny", "fetch": PARAMS["fetch"]}))
    empty = tmp_path / "upstream"
    empty.mkdir()
    first = fetch_cfg("gpt1").dump_parts[0]
    res = subprocess.run([sys.executable, "-m", "gptpipe", "mirror", str(tmp_path / "m"),
                          "--params", str(params), "--from", str(empty), "--corpus", ENWIKI,
                          "--only", first.name], capture_output=True, text=True)
    assert res.returncode == 1
    assert f"source {first.name}: {empty / first.path} not found in the mirror" in res.stderr


# --------------------------------------------------------------------------- the jobs


def _jobs(output: str, rule: str) -> dict[str, str]:
    """wildcard value -> shell command of each job of `rule` in a `-n -p` dry run."""
    jobs = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", output):
        if re.search(rf"^rule {rule}:", block, re.MULTILINE):
            part = re.search(r"^    wildcards: part=(\S+)", block, re.MULTILINE).group(1)
            cmd = re.search(r"^Shell command: (.*)$", block, re.MULTILINE).group(1)
            jobs[part] = " ".join(cmd.split())
    return jobs


def test_gpt1_plans_a_fetch_and_an_ingest_job_per_part_tiny_one(tmp_path, mirror_env):
    proj = project_copy(tmp_path / "proj")
    tiny = snakemake(proj, "all", "-n", "-p", env=mirror_env)
    counts = job_counts(tiny.stdout + tiny.stderr)
    assert counts["ingest"] == 1 and counts["fetch"] == 1 and "fetch_dump" not in counts
    gpt1 = snakemake(proj, "all", "-n", "-p", config=("scale=gpt1",), env=mirror_env)
    out = gpt1.stdout + gpt1.stderr
    counts = job_counts(out)
    assert counts["fetch_dump"] == 59 and counts["ingest"] == 59 and counts["fetch"] == 1
    parts = {s.name: s.path for s in fetch_cfg("gpt1").dump_parts}
    fetches, ingests = _jobs(out, "fetch_dump"), _jobs(out, "ingest")
    assert set(fetches) == set(ingests) == set(parts)
    for name, path in parts.items():
        assert fetches[name].startswith(f"python -m gptpipe fetch --params params.yaml --output "
                                        f"data --only {name} --scale gpt1 2> ")
        assert f"--input data/{path} --output results/ingest/{name} " in ingests[name]
        assert "--index" not in ingests[name]  # no index is recorded: the single-stream path
    # The sample's part is not fetched at gpt1.
    main_fetch = re.search(r"Shell command: (python -m gptpipe fetch .* --only glue\S* .*)", out)
    assert "enwiki-sample" not in main_fetch.group(1)
    # DVC's pipeline at gpt1 has the same jobs under the same names.
    stages = dvcyaml.stages({**PARAMS, "scale": "gpt1"})
    assert set(stages["fetch_dump"]["foreach"]) == set(stages["ingest"]["foreach"]) == set(parts)
    assert stages["fetch_dump"]["do"]["params"] == ["scale"]  # dump_base_url reruns nothing
    assert "fetch_dump" not in dvcyaml.stages(PARAMS)


def test_fetch_knobs_leave_out_where_the_parts_come_from():
    moved = {**PARAMS, "fetch": {**PARAMS["fetch"], "dump_base_url": "https://example.org/x"}}
    assert gw.fetch_knobs(moved, moved) == gw.fetch_knobs(PARAMS, PARAMS)
    gpt1 = {**PARAMS, "scale": "gpt1"}
    cfg = validate_params(gpt1)
    assert "enwiki-sample" not in gw.needed_sources(cfg["finetune"], cfg["fetch"])
    assert len(gw.corpus_dumps(cfg["fetch"])) == 59
    assert gw.corpus_file(cfg["fetch"]) == "gptpipe/fetch/corpora/enwiki-20200501.yaml"


# --------------------------------------------------------------------------- resumable download


class _Server:
    """Serves `blob` at /blob, honouring `Range: bytes=N-` (206) unless `ranges` is False;
    `cuts`: bytes sent before the connection drops, one entry per request, in order."""

    def __init__(self, blob: bytes, cuts: list[int], ranges: bool = True) -> None:
        self.blob, self.cuts, self.ranges, self.seen = blob, list(cuts), ranges, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                asked = self.headers.get("Range")
                server.seen.append(asked)
                start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if (
                    asked and server.ranges) else 0
                body = server.blob[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(server.blob) - 1}/{len(server.blob)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts:  # the whole length was promised; send part of it and hang up
                    self.wfile.write(body[:server.cuts.pop(0)])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/blob"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


BLOB = os.urandom(1_000_003)
PART = "wikipedia/x/part1.xml-p1p9.bz2"


def _part(url: str, blob: bytes = BLOB, size: int | None = None) -> Source:
    import hashlib

    return build(Source, {"name": "part1", "role": "dump", "path": PART, "url": url,
                          "checksum": "sha256:" + hashlib.sha256(blob).hexdigest(),
                          "size": len(blob) if size is None else size}, "test")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_dropped_connections_resume_where_they_were_cut(tmp_path, caplog):
    """Three drops in a row, each after some bytes (more than FAST's 2 retries in all: an
    attempt that got bytes does not count against them); each retry asks for the rest."""
    with _Server(BLOB, cuts=[300_001, 200_000, 100_000]) as srv:
        got = fetch_source(_part(srv.url), tmp_path, None, FAST)
    assert got.how == "download" and (tmp_path / PART).read_bytes() == BLOB
    assert srv.seen == [None, "bytes=300001-", "bytes=500001-", "bytes=600001-"]
    assert _files(tmp_path) == [PART]  # no .part left
    assert "retrying" in caplog.text and "from byte 300001" in caplog.text


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path, caplog):
    with _Server(BLOB, cuts=[300_001], ranges=False) as srv:
        fetch_source(_part(srv.url), tmp_path, None, FAST)
    assert srv.seen == [None, "bytes=300001-"]  # asked for the rest, got the whole file
    assert (tmp_path / PART).read_bytes() == BLOB
    assert "ignored the range request: starting over" in caplog.text


def test_a_part_file_left_by_a_killed_run_is_resumed(tmp_path):
    (tmp_path / PART).parent.mkdir(parents=True)
    (tmp_path / (PART + ".part")).write_bytes(BLOB[:400_000])
    with _Server(BLOB, cuts=[]) as srv:
        assert fetch_source(_part(srv.url), tmp_path, None, FAST).how == "download"
    assert srv.seen == ["bytes=400000-"]
    assert (tmp_path / PART).read_bytes() == BLOB and _files(tmp_path) == [PART]


def test_a_complete_part_file_is_only_verified(tmp_path):
    """Killed between the last byte and the rename: nothing is asked of the server."""
    (tmp_path / PART).parent.mkdir(parents=True)
    (tmp_path / (PART + ".part")).write_bytes(BLOB)
    with _Server(BLOB, cuts=[]) as srv:
        fetch_source(_part(srv.url), tmp_path, None, FAST)
    assert srv.seen == [] and (tmp_path / PART).read_bytes() == BLOB


def test_wrong_checksum_fails_clearly_and_leaves_no_file(tmp_path):
    """The bytes served (resumed after a cut) are not the declared ones."""
    with _Server(BLOB, cuts=[500_000]) as srv:
        src = _part(srv.url, blob=b"other bytes", size=len(BLOB))
        with pytest.raises(GptpipeError) as err:
            fetch_source(src, tmp_path, None, FAST)
    assert str(err.value).startswith(f"source part1: checksum mismatch for {srv.url}: expected "
                                     f"{src.checksum}, got sha256:")
    assert "(the download was deleted)" in str(err.value)
    assert _files(tmp_path) == []  # neither the file nor its .part


def test_wrong_size_fails_and_leaves_no_file(tmp_path):
    with _Server(BLOB, cuts=[]) as srv:
        with pytest.raises(GptpipeError, match=rf"source part1: {srv.url} gave 1000003 bytes, "
                                               r"expected 1000004"):
            fetch_source(_part(srv.url, size=len(BLOB) + 1), tmp_path, None, FAST)
    assert _files(tmp_path) == []


# --------------------------------------------------------------------------- ingest without index


def test_a_part_without_index_goes_through_ingest(shared_data, tmp_path):
    """A part as the corpus declares them (no index) -> fetch from a mirror -> `gptpipe ingest`
    with the workflow's command line (no --index): the sample's single-stream file stands in."""
    from gptpipe.io import file_digest

    mirror = tmp_path / "mirror"
    (mirror / PART).parent.mkdir(parents=True)
    (mirror / PART).write_bytes((shared_data / SINGLE).read_bytes())
    blob = (mirror / PART).read_bytes()
    src = build(Source, {"name": "part1", "role": "dump", "path": PART, "size": len(blob),
                         "url": "https://example.org/part1.bz2",
                         "checksum": "sha256:" + file_digest(mirror / PART)}, "test")
    data = tmp_path / "data"
    assert fetch_source(src, data, mirror).how == "mirror"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"scale": "micro"}))
    out = tmp_path / "ingest" / "part1"
    res = subprocess.run([sys.executable, "-m", "gptpipe", "ingest", "--params", str(params),
                          "--input", str(data / PART), "--output", str(out),
                          "--processes", "2"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pages_kept"] > 50, stats
    assert list(out.glob("part-*.parquet"))


def test_the_report_lists_the_corpus_parts_it_read():
    """At gpt1 the report's provenance names the 59 parts (with their dump date), not the
    sample the run never read."""
    from gptpipe.report.provenance import declared_inputs

    fetch = fetch_cfg("gpt1")
    rows = declared_inputs(fetch, ["glue-sst2"])
    dumps = [r for r in rows if r["role"] == "dump"]
    assert len(dumps) == 59 and {r["date"] for r in dumps} == {"2020-05-01"}
    assert [r["name"] for r in rows if r["role"] != "dump"] == ["glue-sst2"]
    assert "enwiki-sample" not in {r["name"] for r in rows}
