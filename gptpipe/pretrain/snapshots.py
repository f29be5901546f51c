"""Weight-only snapshots for the `zeroshot` stage (Figure 2, right): the model at update 0 (the
untrained model, the figure's left end), every `pretrain.snapshot_every` updates, and at the last.

    CHECKPOINTS/<run>/snapshots/update<N>.safetensors   written by rank 0 as training passes N;
                                                        never rotated, so they survive a resume
    OUTPUT/snapshots/update<N>.safetensors              copied (hard-linked where possible)
    OUTPUT/snapshots/index.json                         [{update, tokens, file}], by update

Saving reads the weights only: no random number is drawn, so a run with snapshots trains
exactly as one without. The `zeroshot` stage reads them from the pretrain output alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..atomic import atomic_path, write_json
from ..modeldir import unwrap

log = logging.getLogger(__name__)

FOLDER = "snapshots"
INDEX = "index.json"
NAME_RE = re.compile(r"^update(\d+)\.safetensors$")


def file_name(update: int) -> str:
    return f"update{update}.safetensors"


class Snapshots:
    """Where rank 0 saves the snapshots of one run (`run_dir/snapshots`), and when."""

    def __init__(self, run_dir: Path, every: int, last: int) -> None:
        self.folder, self.every, self.last = Path(run_dir) / FOLDER, every, last

    def due(self, update: int) -> bool:
        return self.every > 0 and (update % self.every == 0 or update == self.last)

    def maybe_save(self, update: int, model: torch.nn.Module) -> None:
        """Save the weights after `update` updates when one is due (again if already there:
        a resumed run passes the same update with the same weights)."""
        if not self.due(update):
            return
        state = {k: v.detach().to("cpu").contiguous()
                 for k, v in unwrap(model).state_dict().items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / file_name(update)) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "update": str(update)})

    def export(self, out: Path, batch_tokens: int) -> list[dict]:
        """Put every snapshot of this run up to `last` into `out` with its index; the index."""
        found = sorted((int(m.group(1)), p) for p in self.folder.glob("update*.safetensors")
                       if (m := NAME_RE.match(p.name)) and int(m.group(1)) <= self.last)
        out.mkdir(parents=True, exist_ok=True)
        index = []
        for update, path in found:
            _link_or_copy(path, out / path.name)
            index.append({"update": update, "tokens": update * batch_tokens, "file": path.name})
        write_json(out / INDEX, index)
        log.info("%d snapshot(s) into %s", len(index), out)
        return index


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (no second copy of the weights on disk), else a copy (another filesystem).
    A snapshot is only ever replaced by a rename, never written in place, so a link is safe."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
