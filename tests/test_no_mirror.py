"""README command 1 without the sample mirror: everything from public downloads (issue #16, 4).

The sample's files are served by a local HTTP server in the layout of the declared URLs
(`<host>/<path>`), with archives built from the sample for GLUE's zips and SNLI's; the project's
params.yaml points every source there (archive and MSRP checksums become those of what is
served: the sample is smaller than the real downloads), and no mirror is set anywhere. Story
Cloze is handed out on request, so nothing serves it: the tiny demo leaves it out and says why.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gptpipe.declared import declared_sources
from workflow_projects import finetune_figures, job_counts, project_copy, snakemake

pytestmark = pytest.mark.slow

# No mirror, no proxy: `fetch` must reach the local server itself.
NO_MIRROR = {"GPTPIPE_MIRROR": "", "http_proxy": "", "https_proxy": "", "HTTP_PROXY": "",
             "HTTPS_PROXY": "", "all_proxy": "", "ALL_PROXY": ""}
# Archive sources -> the folder their zip holds at its top (GLUE: the task's name).
ZIP_TOP = {"snli": "snli_1.0"}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _digest(path: Path, algo: str) -> str:
    return f"{algo}:{hashlib.new(algo, path.read_bytes()).hexdigest()}"


def _zip(folder: Path, top: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")


def _serve_as(www: Path, url: str, port: int) -> tuple[Path, str]:
    """Where `url`'s file goes under `www`, and the local URL that serves it."""
    parts = urlsplit(url)
    rel = f"{parts.netloc}{parts.path}"
    return www / rel, f"http://127.0.0.1:{port}/{rel}"


def _publish(sample: Path, www: Path, port: int, params: dict) -> dict:
    """Put the sample under `www` as its sources' URLs serve them; returns params whose sources
    download from there (checksums of what is served where the sample differs)."""
    sources = []
    for src in declared_sources():
        src = dict(src)
        if src.get("kind") == "manual":  # handed out on request: nobody serves it
            sources.append(src)
            continue
        if src.get("kind") == "build":  # made from the sources below
            sources.append(src)
            continue
        target, src["url"] = _serve_as(www, src["url"], port)
        if src.get("kind") == "archive":
            folder = sample / src["path"]
            if not folder.is_dir():  # not in the sample (MNLI, RACE, SciTail): not served
                sources.append(src)
                continue
            _zip(folder, ZIP_TOP.get(src["name"], folder.name), target)
            src["checksum"] = _digest(target, "sha256")
        elif src.get("repack"):  # the dump: the very file its URL serves (gensim's test data)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((sample / "wikipedia" / Path(urlsplit(src["url"]).path).name)
                               .read_bytes())
        else:  # MRPC's raw files and dev ids
            target.parent.mkdir(parents=True, exist_ok=True)
            raw = sample / src["path"]
            if raw.is_file():
                target.write_bytes(raw.read_bytes())
            else:  # msr_paraphrase_test.txt: rebuilt from GLUE's test.tsv (labels dropped)
                rows = (sample / "glue/MRPC/test.tsv").read_text(encoding="utf-8").splitlines()
                lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
                lines += ["0\t" + "\t".join(r.split("\t")[1:]) for r in rows[1:]]
                target.write_text("\n".join(lines) + "\n", encoding="utf-8")
            src["checksum"] = _digest(target, src["checksum"].split(":")[0])
        sources.append(src)
    return {**params, "fetch": {"sources": sources}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _project(dest: Path, scale: str, sample: Path, server) -> Path:
    www, port = server
    proj = project_copy(dest, scale=scale)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    (proj / "params.yaml").write_text(yaml.safe_dump(_publish(sample, www, port, params),
                                                     sort_keys=False))
    return proj


def _finetune_jobs(output: str) -> set[str]:
    return set(re.findall(r"output: results/finetune/(\S+/\S+/seed\d+)", output))


def test_no_mirror_micro_dag_runs_from_download_to_report(shared_data, server, tmp_path):
    proj = _project(tmp_path / "proj", "micro", shared_data, server)
    res = snakemake(proj, "all", env=NO_MIRROR)
    fetched = (proj / "results/logs/fetch.log").read_text()
    assert "(download" in fetched and "(mirror" not in fetched, fetched[-2000:]
    assert (proj / "results/report/index.html").is_file(), res.stderr[-2000:]
    assert set(finetune_figures(proj)) == {"SST-2/full/seed0", "RTE/full/seed0",
                                           "SST-2/no_pretrain/seed0"}


def test_no_mirror_tiny_plans_the_mirrors_jobs_less_the_manual_tasks(shared_data, server,
                                                                     tmp_path):
    proj = _project(tmp_path / "proj", "tiny", shared_data, server)
    without = snakemake(proj, "all", "-n", env=NO_MIRROR)
    with_mirror = snakemake(proj, "all", "-n", env={"GPTPIPE_MIRROR": str(shared_data)})
    jobs = _finetune_jobs(without.stdout)
    assert jobs == {j for j in _finetune_jobs(with_mirror.stdout)
                    if not j.startswith("StoryCloze/")}
    assert "MRPC/full/seed0" in jobs and len(jobs) == 18  # 3 SST-2/transfer<k>, 2 */lstm
    assert "StoryCloze: not run: source needs a manual download" in without.stderr
    counts = job_counts(with_mirror.stdout + with_mirror.stderr)
    assert job_counts(without.stdout + without.stderr) == {**counts, "finetune": 18}
    assert counts["finetune"] == 19 and counts["pretrain_lstm"] == 1
