"""fetch: mirror, HTTP download (a local server on 127.0.0.1), checksums, repack, archives, CLI."""

from __future__ import annotations

import bz2
import functools
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from gptpipe.config import FetchConfig, Source, build
from gptpipe.declared import declared_sources
from gptpipe.errors import ConfigError, GptpipeError
from gptpipe.fetch.sources import (
    MARKER,
    Http,
    fetch_source,
    output_paths,
    repack_multistream,
    resolve,
    resolve_all,
)

pytestmark = pytest.mark.timeout(60)

SINGLE = "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MULTI = "wikipedia/enwiki-20160501-p10-shortened-pages-articles-multistream.xml.bz2"
INDEX = "wikipedia/enwiki-20160501-p10-shortened-pages-articles-multistream-index.txt.bz2"
SINGLE_SHA = "sha256:a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
MULTI_SHA = "sha256:0390a841c84a23290bb6ed59a27960419a45269af8b8d66020397aa721fb064a"
INDEX_SHA = "sha256:3608de0a327d56090fd3e1d094943770e9372143eecc68a81eca931c17537edd"
COLA_DEV = "glue/CoLA/dev.tsv"
COLA_DEV_SHA = "sha256:8c013e21dc39957c"  # prefix from MANIFEST.md; the full digest is computed
STORY = "other/StoryCloze/cloze_test_val__spring2016 - cloze_test_ALL_val.csv"
FAST = Http(timeout_s=5.0, retries=2, backoff_s=0.01)

# The demo's dump part, as declared in params.yaml (url: gensim's copy, repacked on download).
DEMO = {
    "name": "enwiki-sample",
    "role": "dump",
    "path": MULTI,
    "checksum": MULTI_SHA,
    "index_path": INDEX,
    "index_checksum": INDEX_SHA,
    "url": "https://github.com/RaRe-Technologies/gensim/raw/4.4.0/gensim/test/test_data/"
           "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "url_checksum": SINGLE_SHA,
    "repack": "multistream",
    "pages_per_stream": 100,
}


def source(**kw) -> Source:
    return build(Source, kw, "test")


def digest(path: Path, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, path.read_bytes()).hexdigest()}"


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- local HTTP server


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder; `/flaky/X` drops the connection on its first request, then serves X."""

    dropped: set[str] = set()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.startswith("/flaky/") and self.path not in self.dropped:
            self.dropped.add(self.path)
            self.close_connection = True
            return  # no status line at all: the client sees the connection closed
        self.path = self.path.removeprefix("/flaky")
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory, shared_data):
    """The folder served over HTTP: `mirror/` is the shared data; tests add their own files."""
    root = tmp_path_factory.mktemp("www")
    (root / "mirror").symlink_to(shared_data, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(http_root):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_Handler, directory=str(http_root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


# --------------------------------------------------------------------------- mirror


def test_demo_source_from_mirror_then_cached(shared_data, tmp_path):
    data = tmp_path / "data"
    first = fetch_source(source(**DEMO), data, shared_data)
    assert first.how == "mirror"
    assert first.paths == (data / MULTI, data / INDEX)
    assert digest(data / MULTI) == MULTI_SHA and digest(data / INDEX) == INDEX_SHA
    assert first.bytes == 1_700_006 + 2_002
    stamp = (data / MULTI).stat().st_mtime_ns
    second = fetch_source(source(**DEMO), data, shared_data)
    assert second.how == "cached"
    assert (data / MULTI).stat().st_mtime_ns == stamp
    assert listing(data) == ["wikipedia", INDEX, MULTI]  # nothing else left behind


def test_wrong_file_in_place_is_replaced(shared_data, tmp_path, caplog):
    (tmp_path / MULTI).parent.mkdir(parents=True)
    (tmp_path / MULTI).write_bytes(b"not the dump")
    assert fetch_source(source(**DEMO), tmp_path, shared_data).how == "mirror"
    assert digest(tmp_path / MULTI) == MULTI_SHA
    assert "replacing" in caplog.text and str(tmp_path / MULTI) in caplog.text


def test_mirror_missing_file_fails_naming_it(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(GptpipeError, match="enwiki-sample") as err:
        resolve(source(**DEMO), tmp_path / "data", mirror)
    assert str(mirror / MULTI) in str(err.value)
    assert not (tmp_path / "data" / MULTI).exists()


def test_mirror_with_wrong_checksum_fails(shared_data, tmp_path):
    bad = {**DEMO, "checksum": "sha256:" + "0" * 64}
    with pytest.raises(GptpipeError, match="checksum mismatch") as err:
        resolve(source(**bad), tmp_path, shared_data)
    assert str(shared_data / MULTI) in str(err.value) and MULTI_SHA in str(err.value)
    assert not (tmp_path / MULTI).exists()


# --------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("algo", ["sha256", "sha1", "md5"])
def test_download_verified(server, shared_data, tmp_path, algo):
    expected = digest(shared_data / COLA_DEV, algo)
    assert digest(shared_data / COLA_DEV).startswith(COLA_DEV_SHA)  # the file MANIFEST.md lists
    src = source(name="cola-dev", path=COLA_DEV, checksum=expected,
                 url=f"{server}/mirror/{COLA_DEV}")
    got = fetch_source(src, tmp_path, None, FAST)
    assert got.how == "download" and got.bytes == 53_717
    assert (tmp_path / COLA_DEV).read_bytes() == (shared_data / COLA_DEV).read_bytes()
    assert fetch_source(src, tmp_path, None, FAST).how == "cached"


def test_download_checksum_mismatch_leaves_nothing(server, shared_data, tmp_path):
    wrong = "sha256:" + "ab" * 32
    src = source(name="cola-dev", path=COLA_DEV, checksum=wrong, url=f"{server}/mirror/{COLA_DEV}")
    with pytest.raises(GptpipeError) as err:
        fetch_source(src, tmp_path, None, FAST)
    msg = str(err.value)
    assert "\n" not in msg and "cola-dev" in msg and src.url in msg
    assert wrong in msg and digest(shared_data / COLA_DEV) in msg
    assert listing(tmp_path) == ["glue", "glue/CoLA"]  # no final file, no temp file


def test_download_404_is_one_line_naming_url(server, tmp_path):
    url = f"{server}/mirror/glue/CoLA/nope.tsv"
    src = source(name="nope", path="nope.tsv", checksum="md5:" + "0" * 32, url=url)
    with pytest.raises(GptpipeError) as err:
        fetch_source(src, tmp_path, None, FAST)
    assert str(err.value) == f"source nope: download failed: {url}: HTTP 404 File not found"
    assert listing(tmp_path) == []


def test_download_retries_a_dropped_connection(server, shared_data, tmp_path, caplog):
    src = source(name="cola-dev", path=COLA_DEV, checksum=digest(shared_data / COLA_DEV),
                 url=f"{server}/flaky/mirror/{COLA_DEV}")
    assert fetch_source(src, tmp_path, None, FAST).how == "download"
    assert "retrying" in caplog.text


def test_download_gives_up_on_refused_connection(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = source(name="x", path="x", checksum="md5:" + "0" * 32, url=f"http://127.0.0.1:{port}/x")
    refused = r"source x: download failed: .*refused.*\(after 3 tries\)"
    with pytest.raises(GptpipeError, match=refused):
        fetch_source(src, tmp_path, None, FAST)
    assert listing(tmp_path) == []


def test_download_and_repack_reproduces_the_shared_multistream(server, tmp_path):
    demo = {**DEMO, "url": f"{server}/mirror/{SINGLE}"}
    got = fetch_source(source(**demo), tmp_path, None, FAST)
    assert got.how == "download"
    assert digest(tmp_path / MULTI) == MULTI_SHA and digest(tmp_path / INDEX) == INDEX_SHA
    assert listing(tmp_path) == ["wikipedia", INDEX, MULTI]  # the download itself is gone
    assert fetch_source(source(**demo), tmp_path, None, FAST).how == "cached"


# --------------------------------------------------------------------------- repack (small)


def _page(pid: int, title: str) -> str:
    return (f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>{pid}</id>\n"
            f"    <revision>\n      <id>{pid + 1000}</id>\n      <text>t{pid} &lt;page&gt;</text>\n"
            "    </revision>\n  </page>\n")


XML = ("<mediawiki>\n  <siteinfo>\n    <sitename>W</sitename>\n  </siteinfo>\n"
       + _page(1, "AT&amp;T") + _page(2, "B &quot;q&quot;") + _page(3, "Cé") + "</mediawiki>\n")


def _streams(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, decompressed bytes) of each bz2 stream in `data`."""
    out, offset = [], 0
    while offset < len(data):
        dec = bz2.BZ2Decompressor()
        text = dec.decompress(data[offset:])
        out.append((offset, text))
        offset = len(data) - len(dec.unused_data)
    return out


def test_repack_layout_and_index(tmp_path):
    (tmp_path / "in.bz2").write_bytes(bz2.compress(XML.encode()))
    pages = repack_multistream(tmp_path / "in.bz2", tmp_path / "out.bz2", tmp_path / "i.bz2", 2)
    assert pages == 3
    streams = _streams((tmp_path / "out.bz2").read_bytes())
    texts = [t.decode() for _, t in streams]
    assert "".join(texts) == XML
    assert texts[0].endswith("</siteinfo>\n") and texts[3] == "</mediawiki>\n"
    assert texts[1] == _page(1, "AT&amp;T") + _page(2, "B &quot;q&quot;")
    assert [bz2.compress(t.encode(), 9) for t in texts] == [
        (tmp_path / "out.bz2").read_bytes()[a:b]
        for a, b in zip([o for o, _ in streams], [o for o, _ in streams][1:] + [None])
    ]
    index = bz2.decompress((tmp_path / "i.bz2").read_bytes()).decode()
    o1, o2 = streams[1][0], streams[2][0]
    assert index == f'{o1}:1:AT&T\n{o1}:2:B "q"\n{o2}:3:Cé\n'


def test_repack_rejects_non_dump(tmp_path):
    (tmp_path / "in.bz2").write_bytes(bz2.compress(b"<html>hello</html>\n"))
    with pytest.raises(GptpipeError, match="not a MediaWiki dump"):
        repack_multistream(tmp_path / "in.bz2", tmp_path / "o", tmp_path / "i")
    (tmp_path / "in.bz2").write_bytes(b"plain text, no bz2")
    with pytest.raises(GptpipeError, match="in.bz2: cannot repack"):
        repack_multistream(tmp_path / "in.bz2", tmp_path / "o", tmp_path / "i")


def test_repack_with_wrong_index_checksum_leaves_neither_file(server, http_root, tmp_path):
    raw = bz2.compress(XML.encode())
    (http_root / "small.xml.bz2").write_bytes(raw)
    src = source(name="small", path="w/ms.bz2", checksum="sha256:" + "1" * 64,
                 index_path="w/idx.bz2", index_checksum="sha256:" + "2" * 64,
                 url=f"{server}/small.xml.bz2", repack="multistream", pages_per_stream=2,
                 url_checksum="sha256:" + hashlib.sha256(raw).hexdigest())
    with pytest.raises(GptpipeError, match="small: checksum mismatch .*repacked \\(3 pages\\)"):
        fetch_source(src, tmp_path, None, FAST)
    assert listing(tmp_path) == ["w"]


# --------------------------------------------------------------------------- manual


def test_manual_missing_gives_instructions_and_path(shared_data, tmp_path):
    src = source(name="storycloze-val", path=STORY, kind="manual", role="task",
                 checksum=digest(shared_data / STORY),
                 instructions="Request it at https://cs.rochester.edu/nlp/rocstories/\n(free).")
    with pytest.raises(GptpipeError) as err:
        resolve(src, tmp_path / "data")
    msg = str(err.value)
    assert "\n" not in msg
    assert "Request it at https://cs.rochester.edu/nlp/rocstories/ (free)." in msg
    assert str(tmp_path / "data" / STORY) in msg
    assert digest(shared_data / STORY).startswith("sha256:b1490dd866bb30c1")  # MANIFEST.md
    assert resolve(src, tmp_path / "data", shared_data) == tmp_path / "data" / STORY
    assert digest(tmp_path / "data" / STORY) == src.checksum
    assert fetch_source(src, tmp_path / "data").how == "cached"  # no mirror needed any more


# --------------------------------------------------------------------------- archives


def _zip(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return digest(path)


def _tar(path: Path, members: dict[str, bytes], link: str | None = None) -> str:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    return digest(path)


MEMBERS = {"Task/train.tsv": b"a\t1\n", "Task/sub/dev.tsv": b"b\t0\n"}


@pytest.mark.parametrize("ext, make", [(".zip", _zip), (".tar.gz", _tar)])
def test_archive_download_unpacks(server, http_root, tmp_path, ext, make):
    checksum = make(http_root / f"task{ext}", MEMBERS)
    src = source(name="task", kind="archive", path="tasks/Task", checksum=checksum,
                 url=f"{server}/task{ext}", strip_components=1)
    got = fetch_source(src, tmp_path, None, FAST)
    assert got.how == "download" and got.paths == (tmp_path / "tasks/Task",)
    assert (tmp_path / "tasks/Task/train.tsv").read_bytes() == b"a\t1\n"
    assert (tmp_path / "tasks/Task/sub/dev.tsv").read_bytes() == b"b\t0\n"
    assert (tmp_path / "tasks/Task" / MARKER).read_text() == checksum + "\n"
    assert listing(tmp_path / "tasks") == ["Task", f"Task/{MARKER}", "Task/sub",
                                           "Task/sub/dev.tsv", "Task/train.tsv"]
    assert fetch_source(src, tmp_path, None, FAST).how == "cached"


@pytest.mark.parametrize("ext, make, member", [
    (".zip", _zip, "../evil.txt"),
    (".zip", _zip, "/abs/evil.txt"),
    (".tar.gz", _tar, "Task/../../evil.txt"),
])
def test_archive_path_traversal_refused(server, http_root, tmp_path, ext, make, member):
    checksum = make(http_root / f"evil{ext}", {**MEMBERS, member: b"pwned"})
    src = source(name="evil", kind="archive", path="tasks/Evil", checksum=checksum,
                 url=f"{server}/evil{ext}")
    with pytest.raises(GptpipeError, match="refusing") as err:
        fetch_source(src, tmp_path / "data", None, FAST)
    assert repr(member) in str(err.value)
    assert listing(tmp_path) == ["data", "data/tasks"]  # nothing unpacked anywhere


def test_archive_link_member_refused(server, http_root, tmp_path):
    checksum = _tar(http_root / "link.tar.gz", MEMBERS, link="Task/passwd")
    src = source(name="link", kind="archive", path="L", checksum=checksum,
                 url=f"{server}/link.tar.gz")
    with pytest.raises(GptpipeError, match="'Task/passwd' is a link"):
        fetch_source(src, tmp_path, None, FAST)
    assert listing(tmp_path) == []


def test_archive_from_mirror_as_archive_file_or_folder(shared_data, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "tasks").mkdir(parents=True)
    checksum = _zip(mirror / "tasks/Task.zip", MEMBERS)
    src = source(name="task", kind="archive", path="tasks/Task", checksum=checksum,
                 url="https://example.invalid/Task.zip", strip_components=1)
    assert fetch_source(src, tmp_path / "a", mirror).how == "mirror"
    assert (tmp_path / "a/tasks/Task/sub/dev.tsv").read_bytes() == b"b\t0\n"
    # The shared data holds GLUE tasks unpacked: glue/CoLA/ is taken as the archive's folder.
    cola = source(name="cola", kind="archive", path="glue/CoLA", checksum=checksum,
                  url="https://example.invalid/CoLA.zip")
    assert resolve(cola, tmp_path / "b", shared_data) == tmp_path / "b/glue/CoLA"
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "b/glue/CoLA" / name).read_bytes() == \
            (shared_data / "glue/CoLA" / name).read_bytes()
    with pytest.raises(GptpipeError, match="found in the mirror") as err:
        resolve(source(name="gone", kind="archive", path="tasks/Gone", checksum=checksum,
                       url="https://example.invalid/Gone.zip"), tmp_path / "c", mirror)
    assert str(mirror / "tasks/Gone") in str(err.value)


# --------------------------------------------------------------------------- API and config


def test_resolve_all_only_and_output_paths(shared_data, tmp_path):
    cola = {"name": "cola-dev", "path": COLA_DEV, "checksum": digest(shared_data / COLA_DEV),
            "url": "https://example.invalid/dev.tsv", "role": "task"}
    cfg = build(FetchConfig, {"sources": [DEMO, cola]}, "fetch")
    assert output_paths(cfg) == [MULTI, INDEX, COLA_DEV]
    assert resolve_all(cfg, tmp_path, shared_data, only=["cola-dev"]) == [tmp_path / COLA_DEV]
    assert not (tmp_path / MULTI).exists()
    with pytest.raises(ConfigError, match="no source named 'typo'"):
        resolve_all(cfg, tmp_path, shared_data, only=["typo"])


@pytest.mark.parametrize("bad, message", [
    ({"checksum": "sha256:abc"}, "expected 'sha256:<hex>'"),
    ({"checksum": "sha1:" + "0" * 64}, "expected 'sha256:<hex>'"),
    ({"index_path": "../x"}, "must be relative"),
    ({"kind": "archive"}, "'repack' and 'index_path' need kind 'file'"),
    ({"repack": None}, "'index_path' without 'repack' needs 'index_url'"),
    ({"strip_components": 1}, "strip_components"),
])
def test_source_checks(bad, message):
    with pytest.raises(ConfigError, match=message):
        build(Source, {**DEMO, **bad}, "fetch.sources[0]")


# --------------------------------------------------------------------------- CLI


def _cli(tmp_path: Path, sources: list[dict], *args: str, mirror: Path | None = None):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"fetch": {"sources": sources}}))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("GPTPIPE_MIRROR", None)
    if mirror is not None:
        env["GPTPIPE_MIRROR"] = str(mirror)
    return subprocess.run(
        [sys.executable, "-m", "gptpipe", "fetch", "--params", str(params), *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


def test_cli_mirror_from_env_and_summary(shared_data, tmp_path):
    res = _cli(tmp_path, [DEMO], "--output", str(tmp_path / "data"), "--summary",
               str(tmp_path / "s.json"), mirror=shared_data)
    assert res.returncode == 0, res.stderr
    assert digest(tmp_path / "data" / MULTI) == MULTI_SHA
    assert f"enwiki-sample: {tmp_path / 'data' / MULTI} (mirror, 1.70 MB" in res.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["sources"][0]["paths"] == [MULTI, INDEX]
    assert summary["sources"][0]["how"] == "mirror" and summary["mirror"] == str(shared_data)
    res = _cli(tmp_path, [DEMO], "--output", str(tmp_path / "data"), "--mirror", str(shared_data))
    assert res.returncode == 0 and f"{MULTI} (cached, 1.70 MB" in res.stderr


def test_cli_checksum_mismatch_exits_1_with_one_line(server, tmp_path):
    bad = {"name": "cola-dev", "path": COLA_DEV, "checksum": "md5:" + "0" * 32,
           "url": f"{server}/mirror/{COLA_DEV}"}
    res = _cli(tmp_path, [bad], "--output", str(tmp_path / "data"))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptpipe fetch: error: source cola-dev: "
                                                    "checksum mismatch for http://127.0.0.1:")
    assert not (tmp_path / "data" / COLA_DEV).exists()


# --------------------------------------------------------------------------- built: MRPC


def _mrpc_sources(server: str, sample: Path, tmp: Path) -> dict[str, Source]:
    """MRPC as params.yaml declares it, downloading from the local server: the sample's
    msr_paraphrase_train.txt and dev_ids.tsv, and an msr_paraphrase_test.txt this test writes
    from the sample's test.tsv (GLUE drops its Quality column, so any label rebuilds it)."""
    www = tmp / "mrpc"
    www.mkdir()
    rows = (sample / "glue/MRPC/test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    raw = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    raw += ["1\t" + "\t".join(r.split("\t")[1:]) for r in rows]
    (www / "msr_paraphrase_test.txt").write_text("\r\n".join(raw) + "\r\n", encoding="utf-8")
    declared = {s["name"]: s for s in declared_sources() if "mrpc" in s["name"]}
    urls = {"glue-mrpc-msr-train": (f"{server}/mirror/glue/MRPC/msr_paraphrase_train.txt",
                                    sample / "glue/MRPC/msr_paraphrase_train.txt"),
            "glue-mrpc-msr-test": (f"{server}/{www.parent.name}/mrpc/msr_paraphrase_test.txt",
                                   www / "msr_paraphrase_test.txt"),
            "glue-mrpc-dev-ids": (f"{server}/mirror/glue/MRPC/dev_ids.tsv",
                                  sample / "glue/MRPC/dev_ids.tsv")}
    for name, (url, path) in urls.items():  # the sample's bytes, not SentEval's: their md5
        declared[name] = {**declared[name], "url": url, "checksum": digest(path, "md5")}
    return {name: source(**kw) for name, kw in declared.items()}


def test_mrpc_is_built_byte_identical_from_the_msrp_downloads(server, http_root, shared_data,
                                                              tmp_path):
    own = http_root / tmp_path.name
    own.mkdir()
    sources = _mrpc_sources(server, shared_data, own)
    data = tmp_path / "data"
    for split in ("train", "dev", "test"):
        name = f"glue-mrpc-{split}-tsv"
        done = fetch_source(sources[name], data, None, FAST, lookup=sources.__getitem__)
        assert done.how == "built" and done.paths == (data / f"glue/MRPC/{split}.tsv",)
        assert (data / f"glue/MRPC/{split}.tsv").read_bytes() == (
            shared_data / f"glue/MRPC/{split}.tsv").read_bytes()
        assert fetch_source(sources[name], data, None, FAST,
                            lookup=sources.__getitem__).how == "cached"
    assert (data / "glue/MRPC/msr_paraphrase_test.txt").is_file()  # kept: reruns are cheap
    # A copy already in the mirror (the shared sample) is used as it is: nothing is built.
    other = tmp_path / "other"
    assert fetch_source(sources["glue-mrpc-dev-tsv"], other, shared_data,
                        lookup=sources.__getitem__).how == "mirror"
    assert not (other / "glue/MRPC/msr_paraphrase_train.txt").exists()


def test_mrpc_build_that_misses_its_checksum_leaves_nothing(server, http_root, shared_data,
                                                            tmp_path):
    own = http_root / tmp_path.name
    own.mkdir()
    sources = _mrpc_sources(server, shared_data, own)
    wrong = Source(**{**sources["glue-mrpc-dev-tsv"].__dict__, "checksum": "sha256:" + "0" * 64})
    data = tmp_path / "data"
    with pytest.raises(GptpipeError, match=r"checksum mismatch for .*dev\.tsv built from "
                                           r"glue-mrpc-msr-train, glue-mrpc-dev-ids"):
        fetch_source(wrong, data, None, FAST, lookup=sources.__getitem__)
    assert not (data / "glue/MRPC/dev.tsv").exists()
    assert not [p for p in (data / "glue/MRPC").iterdir() if p.name.startswith(".")]
    # An input that cannot be downloaded: the error names it, and the way by hand.
    gone = Source(**{**sources["glue-mrpc-msr-test"].__dict__, "url": f"{server}/nowhere.txt"})
    lookup = {**sources, "glue-mrpc-msr-test": gone}.__getitem__
    with pytest.raises(GptpipeError) as err:
        fetch_source(sources["glue-mrpc-test-tsv"], data, None, FAST, lookup=lookup)
    msg = str(err.value)
    assert "cannot build" in msg and "HTTP 404" in msg and "download_glue_data.py" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("change, message", [
    ({"builder": None}, "kind 'build' needs 'builder' and 'build_from'"),
    ({"build_from": ["glue-mrpc-msr-test"]}, "takes 2 source(s) in build_from, got 1"),
    ({"builder": "glue-mrpc-tset"}, "builder"),
    ({"kind": "file", "url": "https://example.org/x"}, "only it has them"),
])
def test_build_sources_are_checked(change, message):
    kw = {"name": "glue-mrpc-dev-tsv", "role": "task", "kind": "build", "path": "glue/MRPC/dev.tsv",
          "builder": "glue-mrpc-dev", "build_from": ["glue-mrpc-msr-train", "glue-mrpc-dev-ids"],
          "checksum": "sha256:" + "0" * 64}
    with pytest.raises(ConfigError) as err:
        source(**{**kw, **change})
    assert message in str(err.value)


def test_build_from_must_name_a_declared_file_source():
    built = {"name": "b", "kind": "build", "path": "b.tsv", "builder": "glue-mrpc-test",
             "build_from": ["raw"], "checksum": "sha256:" + "0" * 64}
    with pytest.raises(ConfigError, match="build_from 'raw' is not a declared source"):
        build(FetchConfig, {"sources": [built]}, "fetch")
    raw = {"name": "raw", "path": "raw.txt", "url": "https://example.org/raw.txt",
           "checksum": "md5:" + "0" * 32}
    assert build(FetchConfig, {"sources": [raw, built]}, "fetch").source("b").build_from == ("raw",)
