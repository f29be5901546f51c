"""`gptpipe mirror`: the air-gapped round trip, with a local HTTP server as "the internet".

Mirror every declared source where there is a network (a file, a zip and a tar.gz archive, the
real sample dump repacked into multistream form, a manual source placed by hand), take the
network away, and `fetch` from the mirror alone: every checksum verified, no connection opened.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.request
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from gptpipe.config import resolve_section
from gptpipe.declared import declared_sources
from gptpipe.errors import GptpipeError
from gptpipe.mirror import build
from gptpipe.fetch import cli as fetch

REPO = Path(__file__).resolve().parents[1]
DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean; requests are counted
        self.server.requests.append(self.path)


@pytest.fixture
def internet(tmp_path):
    """(folder served, base URL, list of request paths) of a server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Handler, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}", server
    server.shutdown()
    server.server_close()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def declared(internet, shared_data):
    """A fetch config whose sources live on the local server, plus a manual one."""
    www, base, _ = internet
    blobs = {"x.tsv": b"a\tb\n1\t2\n",
             "CoLA.zip": _zip({"CoLA/train.tsv": b"s\t1\t\tgood\n", "CoLA/dev.tsv": b"d\n"}),
             "T.tar.gz": _targz({"T/a.txt": b"alpha\n"})}
    for name, data in blobs.items():
        (www / name).write_bytes(data)
    shutil.copyfile(shared_data / "wikipedia" / DUMP, www / DUMP)
    dump = next(s for s in declared_sources() if s["role"] == "dump")
    manual = b"id,story\n1,once\n"
    sources = [
        {**dump, "url": f"{base}/{DUMP}"},
        {"name": "x", "role": "task", "kind": "file", "path": "other/x.tsv",
         "url": f"{base}/x.tsv", "checksum": _sha(blobs["x.tsv"])},
        {"name": "cola", "role": "task", "kind": "archive", "path": "glue/CoLA",
         "strip_components": 1, "url": f"{base}/CoLA.zip", "checksum": _sha(blobs["CoLA.zip"])},
        {"name": "t", "role": "task", "kind": "archive", "path": "other/T", "strip_components": 1,
         "url": f"{base}/T.tar.gz?download=1", "checksum": _sha(blobs["T.tar.gz"])},
        {"name": "story", "role": "task", "kind": "manual", "path": "other/M.csv",
         "checksum": _sha(manual), "instructions": "Ask the authors for M.csv"},
    ]
    # gpt1 scale with the sample corpus: the declared dump, not the 18 GB of enwiki-20200501
    return resolve_section({"scale": "gpt1", "fetch": {"corpus": "sample", "sources": sources}},
                           "fetch"), manual


def test_mirror_then_fetch_without_a_network(declared, internet, tmp_path, monkeypatch):
    cfg, manual = declared
    _, _, server = internet
    mirror = tmp_path / "mirror"
    with pytest.raises(GptpipeError, match=r"(?s)lacks 1 source.*story: put it at .*other/M.csv -- "
                                           r"Ask the authors"):
        build(cfg, mirror)
    # Everything else is there, archives still packed (the compute side verifies them).
    for rel in ("other/x.tsv", "glue/CoLA.zip", "other/T.tar.gz",
                "wikipedia/enwiki-20160501-p10-shortened-pages-articles-multistream.xml.bz2",
                "wikipedia/enwiki-20160501-p10-shortened-pages-articles-multistream-index.txt.bz2"):
        assert (mirror / rel).is_file(), rel
    (mirror / "other/M.csv").write_bytes(manual)  # placed by hand
    asked = len(server.requests)
    assert {m.how for m in build(cfg, mirror)} == {"cached"}
    assert len(server.requests) == asked  # a complete mirror downloads nothing again

    # The cluster: no internet. Any attempt to open a URL fails the test.
    server.shutdown()

    def no_network(*args, **kwargs):
        raise AssertionError(f"fetch opened a connection: {args[0]}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    data = tmp_path / "data"
    summary = fetch.run(cfg, data, mirror=mirror)
    assert {s["name"]: s["how"] for s in summary["sources"]} == {
        "enwiki-sample": "mirror", "x": "mirror", "cola": "mirror", "t": "mirror",
        "story": "mirror"}
    assert (data / "glue/CoLA/train.tsv").read_bytes() == b"s\t1\t\tgood\n"
    assert (data / "other/T/a.txt").read_bytes() == b"alpha\n"

    # A damaged mirror is caught by the same checksums.
    (mirror / "glue/CoLA.zip").write_bytes(b"PK not really")
    with pytest.raises(GptpipeError, match="source cola: checksum mismatch for .*CoLA.zip"):
        fetch.run(cfg, tmp_path / "data2", mirror=mirror)


def test_mirror_cli_writes_the_named_sources(declared, tmp_path):
    cfg, _ = declared
    from gptpipe.config import to_dict

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"scale": "gpt1", "fetch": to_dict(cfg)}))
    res = subprocess.run([sys.executable, "-m", "gptpipe", "mirror", str(tmp_path / "m"),
                          "--params", str(params), "--only", "x", "cola"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "m").rglob("*") if p.is_file()) == [
        "CoLA.zip", "x.tsv"]
    res = subprocess.run([sys.executable, "-m", "gptpipe", "mirror", str(tmp_path / "m"),
                          "--params", str(params), "--only", "story"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "Ask the authors" in res.stderr
