"""Files `fetch` makes from other downloads: GLUE's MRPC train/dev/test TSVs.

GLUE does not host MRPC. Its download script (`download_glue_data.py`, `format_mrpc`) builds
the three files from Microsoft's two MSRP text files (as SentEval publishes them) and GLUE's
list of dev pair ids; `build_glue_mrpc` does the same, byte for byte:

- `test.tsv`: header `index, #1 ID, #2 ID, #1 String, #2 String`, then each row of
  `msr_paraphrase_test.txt` without its label, numbered from 0;
- `train.tsv` / `dev.tsv`: the header line of `msr_paraphrase_train.txt` as it is (UTF-8 BOM
  included), then its rows whose `(#1 ID, #2 ID)` is (dev) or is not (train) in the id list.

Lines are read as text with universal newlines and stripped of outer whitespace, as GLUE's
script does, so a CRLF copy of the MSRP files gives the same bytes. A row without exactly five
tab-separated fields is an error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import GptpipeError

MRPC_TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def _rows(path: Path):
    """(line number, the five fields) of each data row; the header line is yielded first."""
    with open(path, encoding="utf-8") as fh:
        yield 1, fh.readline()
        for n, row in enumerate(fh, 2):
            fields = row.strip().split("\t")
            if len(fields) != 5:
                raise GptpipeError(f"{path}:{n}: expected 5 tab-separated fields (Quality, "
                                   f"#1 ID, #2 ID, #1 String, #2 String), got {len(fields)}")
            yield n, fields


def _dev_ids(path: Path) -> set[tuple[str, str]]:
    ids = set()
    with open(path, encoding="utf-8") as fh:
        for n, row in enumerate(fh, 1):
            pair = row.strip().split("\t")
            if len(pair) != 2:
                raise GptpipeError(f"{path}:{n}: expected '#1 ID<TAB>#2 ID'")
            ids.add((pair[0], pair[1]))
    return ids


def build_glue_mrpc(split: str, inputs: Mapping[str, Path], dest: Path) -> None:
    """Write GLUE's MRPC `split` file ('train', 'dev' or 'test') to `dest`.

    `inputs`: 'msr_train' (msr_paraphrase_train.txt) and 'dev_ids' for train/dev; 'msr_test'
    (msr_paraphrase_test.txt) for test.
    """
    with open(dest, "w", encoding="utf-8", newline="\n") as out:
        if split == "test":
            rows = _rows(inputs["msr_test"])
            next(rows)  # the raw header is replaced by GLUE's
            out.write(MRPC_TEST_HEADER)
            for idx, (_, (_, id1, id2, s1, s2)) in enumerate(rows):
                out.write(f"{idx}\t{id1}\t{id2}\t{s1}\t{s2}\n")
            return
        dev = _dev_ids(inputs["dev_ids"])
        rows = _rows(inputs["msr_train"])
        out.write(next(rows)[1])
        for _, (label, id1, id2, s1, s2) in rows:
            if ((id1, id2) in dev) == (split == "dev"):
                out.write(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
