"""The `shard` stage: exact windows, the tar format, the manifest, determinism and bad inputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from tokenizers import Tokenizer

from conftest import write_ingest_dir
from gptpipe.bpe import tokenizer as bpe
from gptpipe.vocab import load as load_tokenizer
from gptpipe.vocab import save as save_tokenizer
from gptpipe.io import file_sha256
from gptpipe.shard import reader
from gptpipe.shard import writer
from gptpipe.config import BpeConfig, ShardConfig
from gptpipe.errors import GptpipeError
from gptpipe.shard import cli as stage

CFG = ShardConfig(context=32, samples_per_shard=300)


@dataclass(frozen=True)
class Corpus:
    ingest: Path
    tokenizer: Path
    rows: list[dict]  # in Parquet order, which `iter_articles` keeps


def make_corpus(texts: list[str], folder: Path, max_chars: int, vocab: int = 512) -> Corpus:
    """An ingest folder of real articles (their first 20,000 characters) up to ~`max_chars`,
    every 5th one in val, and a small byte-level tokenizer trained on them."""
    rows, chars = [], 0
    for i, text in enumerate(texts):
        if chars >= max_chars:
            break
        text = text[:20_000]
        rows.append({"id": 1000 + i, "title": f"a{i}", "text": text,
                     "split": "val" if i % 5 == 2 else "train"})
        chars += len(text)
    ingest = write_ingest_dir(folder / "ingest", rows)
    tok = bpe.train([r["text"] for r in rows], BpeConfig(vocab_size=vocab, style="bytelevel"))
    save_tokenizer(tok, folder / "tokenizer.json")
    return Corpus(ingest, folder / "tokenizer.json", rows)


def expected_stream(corpus: Corpus, split: str) -> np.ndarray:
    """The split's documents encoded one by one (not in batches), each followed by the eod id."""
    tok = Tokenizer.from_file(str(corpus.tokenizer))
    tok.encode_special_tokens = True
    eod = tok.token_to_id("<|endoftext|>")
    ids: list[int] = []
    for row in corpus.rows:
        if row["split"] == split:
            ids += tok.encode(row["text"], add_special_tokens=False).ids + [eod]
    return np.array(ids)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptpipe", "shard", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def corpus(sample_texts, tmp_path_factory) -> Corpus:
    return make_corpus(sample_texts, tmp_path_factory.mktemp("corpus"), max_chars=250_000)


@pytest.fixture(scope="module")
def out(corpus: Corpus, tmp_path_factory) -> Path:
    """The shard folder, written by the CLI in a subprocess with two encoding processes."""
    work = tmp_path_factory.mktemp("cli")
    (work / "params.yaml").write_text(
        f"scale: micro\nshard: {{context: {CFG.context}, samples_per_shard: "
        f"{CFG.samples_per_shard}}}\n")
    res = run_cli("--ingest", str(corpus.ingest), "--tokenizer", str(corpus.tokenizer),
                  "--output", "shards", "--processes", "2", cwd=work)
    assert res.returncode == 0, res.stderr
    return work / "shards"


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("split", ["train", "val"])
def test_windows_are_the_token_stream_cut_exactly(corpus: Corpus, out: Path, split: str) -> None:
    m = manifest_of(out)["splits"][split]
    window = CFG.context + 1
    blocks = [reader.read_shard(out / s["name"], window, np.uint16, s["samples"])
              for s in m["shards"]]
    got = np.concatenate(blocks).ravel()
    stream = expected_stream(corpus, split)
    assert len(got) == m["samples"] * window == m["tokens"]
    assert len(stream) - len(got) == m["dropped_tail_tokens"] < window
    np.testing.assert_array_equal(got, stream[: len(got)])
    assert m["documents"] == sum(r["split"] == split for r in corpus.rows)
    counts = [s["samples"] for s in m["shards"]]
    assert all(c == CFG.samples_per_shard for c in counts[:-1]) and 0 < counts[-1] <= counts[0]


def test_manifest_describes_the_files(corpus: Corpus, out: Path) -> None:
    m = manifest_of(out)
    _, ids = load_tokenizer(corpus.tokenizer)
    assert (m["format"], m["context"], m["window"], m["dtype"]) == (
        "gptpipe-shards/1", CFG.context, CFG.context + 1, "uint16")
    assert (m["vocab_size"], m["eod_id"]) == (ids.vocab_size, ids.eod) == (517, 516)
    assert m["tokenizer_sha256"] == file_sha256(corpus.tokenizer)
    assert m["config"] == {"context": 32, "samples_per_shard": 300}
    listed = [s["name"] for sp in ("train", "val") for s in m["splits"][sp]["shards"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(listed + ["manifest.json"])
    assert len(m["splits"]["train"]["shards"]) >= 8 and m["splits"]["val"]["samples"] > 0
    for sp in ("train", "val"):
        entries = m["splits"][sp]["shards"]
        assert [e["name"] for e in entries] == [f"{sp}-{i:06d}.tar" for i in range(len(entries))]
        assert m["splits"][sp]["samples"] == sum(e["samples"] for e in entries)
        for e in entries:
            assert hashlib.sha256((out / e["name"]).read_bytes()).hexdigest() == e["sha256"]
    reader.verify_checksums(out)


def test_a_changed_shard_fails_verification(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.iterdir():
        copy.joinpath(p.name).write_bytes(p.read_bytes())
    blob = bytearray((copy / "val-000000.tar").read_bytes())
    blob[600] ^= 1  # one bit of the first sample's tokens
    (copy / "val-000000.tar").write_bytes(bytes(blob))
    with pytest.raises(GptpipeError, match="val-000000.tar: sha256 .* does not match"):
        reader.verify_checksums(copy)


def test_plain_webdataset_reads_the_shards(out: Path) -> None:
    m = manifest_of(out)
    urls = [str(out / s["name"]) for s in m["splits"]["train"]["shards"][:2]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == sum(s["samples"] for s in m["splits"]["train"]["shards"][:2])
    assert samples[0]["__key__"] == "train-000000-000000"
    assert samples[-1]["__key__"].startswith("train-000001-")
    assert {k for k in samples[0] if not k.startswith("__")} == {"tokens.u16"}
    decoded = np.stack([np.frombuffer(s["tokens.u16"], "<u2") for s in samples])
    ours = np.concatenate([reader.read_shard(u, 33, np.uint16) for u in urls])
    np.testing.assert_array_equal(decoded, ours)


def test_tar_members_have_fixed_metadata(out: Path) -> None:
    with tarfile.open(out / "val-000000.tar") as tf:
        members = tf.getmembers()
    assert len(members) == CFG.samples_per_shard
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.size) for m in members} == {
        (0, 0, 0, "", "", 0o644, 66)}
    for name, size in [("a-000000-000000.tokens.u16", 66), ("x" * 100, 0), ("b.tokens.u32", 2052)]:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        assert writer.ustar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT)


def test_shards_rewritten_by_webdataset_are_read(out: Path, tmp_path: Path) -> None:
    """`webdataset.TarWriter` adds pax headers (float mtimes) and keeps other members."""
    src = out / "val-000000.tar"
    rewritten = tmp_path / "val-000000.tar"
    with open(rewritten, "wb") as f, wds.TarWriter(f) as writer:
        for sample in wds.WebDataset([str(src)], shardshuffle=False, empty_check=False):
            writer.write({"__key__": sample["__key__"], "tokens.u16": sample["tokens.u16"],
                          "txt": "a note"})
    with tarfile.open(rewritten) as tf:
        assert any(m.pax_headers for m in tf.getmembers())
    np.testing.assert_array_equal(reader.read_shard(rewritten, 33, np.uint16),
                                  reader.read_shard(src, 33, np.uint16))


def test_dtypes_and_uint32_round_trip(tmp_path: Path) -> None:
    assert reader.token_dtype(65_536) == np.dtype("<u2")
    assert reader.token_dtype(65_537) == np.dtype("<u4")
    windows = np.arange(70_000, 70_000 + 5 * 9, dtype="<u4").reshape(5, 9)
    entry = writer.write_shard(tmp_path / "train-000003.tar", windows)
    assert entry["samples"] == 5 and entry["tokens"] == 45
    with tarfile.open(tmp_path / "train-000003.tar") as tf:
        assert tf.getnames()[1] == "train-000003-000001.tokens.u32"
    back = reader.read_shard(tmp_path / "train-000003.tar", 9, np.dtype("<u4"), 5)
    assert back.dtype == np.dtype("<u4")
    np.testing.assert_array_equal(back, windows)


def test_same_inputs_give_identical_bytes(corpus: Corpus, out: Path, tmp_path: Path) -> None:
    """One in-process encoder against the CLI's two worker processes: the same bytes."""
    again = tmp_path / "again"
    figures = stage.run(ShardConfig(context=32, samples_per_shard=300),
                        [corpus.ingest], corpus.tokenizer, again, processes=1)
    assert figures["splits"] == manifest_of(out)["splits"]
    for p in out.glob("*.tar"):
        assert (again / p.name).read_bytes() == p.read_bytes(), p.name


def test_text_spelling_a_special_token_is_not_a_separator(corpus: Corpus) -> None:
    tok = writer.make_tokenizer(corpus.tokenizer)
    eod = tok.token_to_id("<|endoftext|>")
    ids = writer.encode_documents(tok, ["GPT-2 ends a text with <|endoftext|> here.", "b"], eod,
                                  np.dtype("<u2"))
    assert np.flatnonzero(ids == eod).tolist()[:-1] == [len(ids) - 3]  # after doc 1, then doc 2


def test_window_packer_keeps_the_remainder() -> None:
    packer = writer.WindowPacker(4, np.dtype("<u2"))
    pieces = [np.arange(a, b, dtype="<u2") for a, b in [(0, 5), (5, 5), (5, 12), (12, 31)]]
    got = [packer.add(p) for p in pieces]
    assert [len(g) for g in got] == [1, 0, 2, 4] and packer.rest == 3
    np.testing.assert_array_equal(np.concatenate(got).ravel(), np.arange(28))


def test_shard_writer_cuts_every_n_samples(tmp_path: Path) -> None:
    out = writer.ShardWriter(tmp_path, "val", 4)
    for n in (3, 0, 6, 2):
        out.add(np.zeros((n, 5), dtype="<u2"))
    assert [s["samples"] for s in out.close()] == [4, 4, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"val-00000{i}.tar" for i in range(3)]


def test_bad_shards_are_named(tmp_path: Path) -> None:
    good = writer.tar_bytes([("k-0.tokens.u16", b"\1\0" * 4), ("k-1.tokens.u16", b"\2\0" * 4)])
    (tmp_path / "ok.tar").write_bytes(good)
    assert reader.read_shard(tmp_path / "ok.tar", 4, np.uint16).tolist() == [[1] * 4, [2] * 4]
    with pytest.raises(GptpipeError, match="ok.tar: 2 samples, the manifest says 3"):
        reader.read_shard(tmp_path / "ok.tar", 4, np.uint16, 3)
    with pytest.raises(GptpipeError, match=r"k-0.tokens.u16 at byte 0 holds 8 bytes, expected 10"):
        reader.read_shard(tmp_path / "ok.tar", 5, np.uint16)
    (tmp_path / "cut.tar").write_bytes(good[:1030])
    with pytest.raises(GptpipeError, match="cut.tar: truncated"):
        reader.read_shard(tmp_path / "cut.tar", 4, np.uint16)
    (tmp_path / "text.tar").write_bytes(b"hello world\n" * 100)
    with pytest.raises(GptpipeError, match="text.tar: byte 0: not a ustar regular file"):
        reader.read_shard(tmp_path / "text.tar", 4, np.uint16)
    with pytest.raises(GptpipeError, match="gone.tar: shard not found"):
        reader.read_shard(tmp_path / "gone.tar", 4, np.uint16)


def test_compatibility_checks(out: Path, corpus: Corpus, tmp_path: Path) -> None:
    sha = file_sha256(corpus.tokenizer)
    reader.check_compatible(out, tokenizer_sha256=sha, vocab_size=517, context=32)
    with pytest.raises(GptpipeError, match="manifest.json: shards made with another tokenizer"):
        reader.check_compatible(out, tokenizer_sha256="0" * 64)
    with pytest.raises(GptpipeError, match="517-token vocabulary; the model has 40483"):
        reader.check_compatible(out, vocab_size=40_483)
    with pytest.raises(GptpipeError, match="cut for context 32; the model uses 512"):
        reader.check_compatible(out, context=512)
    with pytest.raises(GptpipeError, match="^here: shards made with another"):
        reader.check_compatible(manifest_of(out), tokenizer_sha256="f" * 64, where="here")
    with pytest.raises(GptpipeError, match="shard manifest not found"):
        reader.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "gptpipe-shards/0"}))
    with pytest.raises(GptpipeError, match="format 'gptpipe-shards/0' is not 'gptpipe-shards/1'"):
        reader.read_manifest(tmp_path)


def _one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    return errors[0]


def test_cli_refuses_an_empty_training_split(corpus: Corpus, tmp_path: Path) -> None:
    rows = [{**r, "split": "val"} for r in corpus.rows[:3]]
    ingest = write_ingest_dir(tmp_path / "only-val", rows)
    (tmp_path / "params.yaml").write_text("scale: micro\n")
    res = run_cli("--ingest", str(ingest), "--tokenizer", str(corpus.tokenizer), "--output",
                  "shards", "--processes", "1", cwd=tmp_path)
    line = _one_line_error(res)
    assert f"{ingest}: no articles in split 'train'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only-val", "params.yaml"]


def test_cli_refuses_a_validation_split_shorter_than_a_window(corpus: Corpus,
                                                             tmp_path: Path) -> None:
    rows = [{**corpus.rows[0], "split": "train"},
            {**corpus.rows[1], "text": "Short.", "split": "val"}]
    ingest = write_ingest_dir(tmp_path / "part", rows)
    (tmp_path / "params.yaml").write_text("scale: micro\n")
    res = run_cli("--ingest", str(ingest), "--tokenizer", str(corpus.tokenizer), "--output",
                  "shards", "--set", "context=32", "--processes", "1", cwd=tmp_path)
    line = _one_line_error(res)
    assert "split 'val' has only" in line and "fewer than one window of 33" in line
    assert not (tmp_path / "shards").exists()


def test_cli_refuses_a_missing_tokenizer(corpus: Corpus, tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("scale: micro\n")
    res = run_cli("--ingest", str(corpus.ingest), "--tokenizer", "nope.json", "--output",
                  "shards", cwd=tmp_path)
    assert "nope.json: tokenizer file not found" in _one_line_error(res)
