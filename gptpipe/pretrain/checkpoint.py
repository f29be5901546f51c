"""Checkpoints that resume a run exactly: model, optimizer, update count, RNG and data position.

    CHECKPOINTS/<run>/                 <run> = first 12 hex digits of the run's fingerprint
      step-00000120/
        model.safetensors             the model's state dict (no pickle)
        optimizer.pt                  optimizer state (tensors and numbers: loads weights_only)
        rank-00000.pt ...             per process: RNG states and its data slots' positions,
                                      by slot id
        meta.json                     written last: step, fingerprint, sha256 of every file
      metrics.jsonl                   the run's metric records (cut back to the step on resume)

The fingerprint hashes everything that shapes the run's trajectory (resolved model and
pretrain config, shard manifest, tokenizer): a run resumes only from its own checkpoints, and a
changed config starts afresh in another `<run>` folder, leaving the old run's checkpoints alone.
Each checkpoint folder appears by one rename (`atomic_path`); one whose files do not match
their recorded sha256 (truncated, corrupted) is skipped for the previous good one, with a log
line saying so. The folder must be shared by all nodes of a multi-node run.

The process count is not part of the fingerprint: the slots (`RunShape`) are the same on any
number of processes, so a run saved by N processes resumes on M, each slot from its own saved
position (the dropout masks then differ from an uninterrupted run: each process draws its own).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_json
from ..config import flatten
from ..errors import GptpipeError
from ..io import file_sha256, json_digest
from ..modeldir import unwrap
from . import distributed as dd

log = logging.getLogger(__name__)

FORMAT = 1
STEP_RE = re.compile(r"^step-(\d{8})$")
MODEL, OPTIM, META = "model.safetensors", "optimizer.pt", "meta.json"


def differences(old: dict, new: dict, limit: int = 4) -> str:
    """`key: old -> new` for the first keys where two fingerprints differ."""
    a, b = flatten(old), flatten(new)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    parts = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:limit]]
    return ", ".join(parts) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


@dataclass(frozen=True)
class Restored:
    """What `Checkpoints.restore` read back (model and optimizer are loaded in place)."""

    path: Path
    step: int  # updates done
    trainer: dict  # the trainer's own figures saved with the checkpoint
    rank_states: list[dict]  # per saving process: RNG states and data positions
    world_size: int  # processes of the run that saved it


class Checkpoints:
    """The checkpoints of one run (one fingerprint) under `root`. Collective calls under DDP."""

    def __init__(self, root: Path, fingerprint: dict, keep: int, env: dd.DistEnv) -> None:
        self.root, self.fingerprint, self.keep, self.env = Path(root), fingerprint, keep, env
        self.digest = json_digest(fingerprint)
        self.run_dir = self.root / self.digest[:12]

    # ----------------------------------------------------------------- saving

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             trainer: dict, rank_state: dict) -> Path:
        """Write checkpoint `step` atomically (every rank adds its own state), prune old ones."""
        final = self.run_dir / f"step-{step:08d}"
        if self.env.is_main:
            with atomic_path(final, is_dir=True) as tmp:
                dd.broadcast_object(str(tmp))
                self._write_rank(tmp, rank_state)
                dd.barrier()  # every rank's file is in place
                self._write_main(tmp, step, model, optimizer, trainer)
            self._prune()
        else:
            tmp = Path(dd.broadcast_object(None))
            self._write_rank(tmp, rank_state)
            dd.barrier()
        dd.barrier()  # nobody goes on before the checkpoint is complete
        return final

    def _write_rank(self, folder: Path, rank_state: dict) -> None:
        torch.save(rank_state, folder / f"rank-{self.env.rank:05d}.pt")

    def _write_main(self, folder: Path, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, trainer: dict) -> None:
        state = {k: v.detach().to("cpu").contiguous()
                 for k, v in unwrap(model).state_dict().items()}
        save_file(state, str(folder / MODEL), metadata={"format": "pt"})
        torch.save(optimizer.state_dict(), folder / OPTIM)
        files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
        write_json(folder / META, {
            "format": FORMAT, "step": step, "world_size": self.env.world_size,
            "digest": self.digest, "fingerprint": self.fingerprint, "trainer": trainer,
            "files": files,
        })

    def _prune(self) -> None:
        """Keep the newest `keep` checkpoints of this run; never touch another run's."""
        steps = sorted(self._steps(), reverse=True)
        for _, path in steps[self.keep:]:
            meta = _read_meta(path)
            if meta is not None and meta.get("digest") == self.digest:
                shutil.rmtree(path, ignore_errors=True)

    def _steps(self) -> list[tuple[int, Path]]:
        if not self.run_dir.is_dir():
            return []
        found = ((STEP_RE.match(p.name), p) for p in self.run_dir.iterdir() if p.is_dir())
        return [(int(m.group(1)), p) for m, p in found if m]

    # ----------------------------------------------------------------- restoring

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Restored | None:
        """Load the newest good checkpoint of this run into `model` and `optimizer` (in place).

        None (start afresh) when there is none; the reasons are logged. Rank 0 chooses, so
        every rank resumes from the same one.
        """
        choice = self._choose() if self.env.is_main else None
        choice = dd.broadcast_object(choice)
        if choice is None:
            return None
        path = Path(choice)
        meta = _read_meta(path)
        tensors, optim_state, ranks = _load_files(path, meta, self.env.device)
        unwrap(model).load_state_dict(tensors)
        optimizer.load_state_dict(optim_state)
        return Restored(path, meta["step"], meta["trainer"], ranks, meta["world_size"])

    def _choose(self) -> str | None:
        self._report_other_runs()
        for step, path in sorted(self._steps(), reverse=True):
            problem = self._check(path)
            if problem is None:
                log.info("resuming from %s (update %d)", path, step)
                return str(path)
            log.warning("skipping checkpoint %s: %s", path, problem)
        return None

    def _check(self, path: Path) -> str | None:
        """Why checkpoint `path` cannot be resumed, or None when it can (it is loaded in full)."""
        meta = _read_meta(path)
        if meta is None:
            return f"{META} is missing or unreadable (interrupted or damaged)"
        if meta.get("format") != FORMAT:
            return f"format {meta.get('format')!r}, this version reads {FORMAT}"
        if meta.get("digest") != self.digest:
            return ("it was made with another config or data ("
                    f"{differences(meta.get('fingerprint') or {}, self.fingerprint)})")
        for name, want in (meta.get("files") or {}).items():
            f = path / name
            if not f.is_file() or file_sha256(f) != want:
                return f"{name} does not match its recorded sha256 (truncated or corrupted)"
        try:
            _load_files(path, meta, torch.device("cpu"))
        except Exception as exc:  # a file that hashes right but does not load is damaged too
            return f"cannot be loaded: {type(exc).__name__}: {exc}".splitlines()[0]
        return None

    def _report_other_runs(self) -> None:
        if not self.root.is_dir():
            return
        for other in sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.run_dir):
            metas = [m for m in map(_read_meta, other.glob("step-*")) if m]
            if metas:
                log.info("not resuming the checkpoints in %s, made with another config (%s); "
                         "they are kept", other,
                         differences(metas[0].get("fingerprint") or {}, self.fingerprint))


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _load_files(path: Path, meta: dict, device: torch.device
                ) -> tuple[dict[str, torch.Tensor], dict, list[dict]]:
    """Model tensors, optimizer state and every rank's state; never unpickles objects."""
    tensors = load_file(str(path / MODEL), device=str(device))
    optim_state = torch.load(path / OPTIM, map_location=device, weights_only=True)
    ranks = [
        torch.load(path / f"rank-{r:05d}.pt", map_location="cpu", weights_only=True)
        for r in range(meta["world_size"])
    ]
    return tensors, optim_state, ranks


def check_dir(root: Path) -> None:
    """The checkpoint root must be a folder (or not exist yet)."""
    if root.exists() and not root.is_dir():
        raise GptpipeError(f"{root}: --checkpoints must be a folder, found a file")
