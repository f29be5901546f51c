"""What a user watches: metric records as JSON lines, a progress bar or log lines, and MFU.

MFU (model FLOPs utilisation, Chowdhery et al. 2022) = achieved training FLOP/s, from the
model's real FLOPs per token (6N + attention), over the devices' dense peak for the precision
the run uses. The peak comes from a per-device table, never one hard-coded number.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

PEAK_ENV = "GPTPIPE_PEAK_TFLOPS"  # per-device peak for a card missing from the table
# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA's datasheets: (bf16, tf32).
# Matched as substrings of `torch.cuda.get_device_name()`, most specific first.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989.0, 494.5),
    ("H100 PCIe", 756.0, 378.0),
    ("H100 NVL", 835.0, 417.5),
    ("H100", 989.0, 494.5),  # SXM (HBM3) and GH200
    ("H800", 989.0, 494.5),
    ("A100", 312.0, 156.0),
    ("A800", 312.0, 156.0),
    ("L40S", 362.0, 183.0),
    ("L4", 121.0, 60.0),
    ("A10", 125.0, 62.5),
)
FIELDS = ("step", "tokens", "loss", "val_loss", "val_bpb", "lr", "grad_norm", "tokens_per_s",
          "mfu")


def peak_flops(device_name: str | None, precision: str) -> float | None:
    """Peak FLOP/s of one device for `precision` ("bf16" or "fp32", i.e. TF32 matmuls).

    None for a CPU or a card missing from the table, unless $GPTPIPE_PEAK_TFLOPS says.
    """
    if device_name is None:
        return None
    env = os.environ.get(PEAK_ENV)
    if env:
        return float(env) * 1e12
    for key, bf16, tf32 in PEAK_TFLOPS:
        if key in device_name:
            return (bf16 if precision == "bf16" else tf32) * 1e12
    return None


def mfu(flops_per_token: int, tokens_per_s: float, peak: float | None,
        devices: int) -> float | None:
    """Model FLOPs utilisation in [0, 1] over `devices` devices of `peak` FLOP/s each."""
    if peak is None or tokens_per_s <= 0:
        return None
    return flops_per_token * tokens_per_s / (peak * devices)


class MetricsLog:
    """Append-only JSON lines (one record per logged update), cut back on resume."""

    def __init__(self, path: Path, resume_step: int) -> None:
        """Keep the records up to `resume_step` (a killed run may have logged past its last
        checkpoint, and those updates are about to be redone) and append after them."""
        self.path = path
        kept = []
        if resume_step > 0 and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a kill is the end of the good part
                if rec.get("step", 0) <= resume_step:
                    kept.append(line)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        self._f: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """FIELDS always (null where not measured this update), then any extra figures."""
        line = {k: record.get(k) for k in FIELDS} | {k: v for k, v in record.items()
                                                     if k not in FIELDS}
        self._f.write(json.dumps(line) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def records(self) -> list[dict]:
        self._f.flush()
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()]


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """A tqdm bar on an interactive terminal; plain log lines every `every` updates otherwise
    (carriage returns make a mess of Snakemake's log files)."""

    def __init__(self, total: int, start: int, tokens_per_update: int, every: int,
                 stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.total, self.every, self.tpu = total, every, tokens_per_update
        self.enabled = enabled
        stream = stream or sys.stderr
        self._bar = None
        if enabled and stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, unit="upd", file=stream,
                             dynamic_ncols=True)
        self._t0, self._start = time.perf_counter(), start

    def update(self, step: int, loss: float, lr: float, tokens_per_s: float | None) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}",
                                  tok_s=f"{tokens_per_s or 0:,.0f}", refresh=False)
            return
        if step % self.every and step != self.total:
            return
        done = step - self._start
        rate = done / max(time.perf_counter() - self._t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        log.info("update %d/%d  tokens %s  loss %.4f  lr %.2e  %s tok/s  ETA %s", step,
                 self.total, f"{step * self.tpu:,}", loss, lr, f"{tokens_per_s or 0:,.0f}",
                 _fmt_time(eta))

    def note(self, message: str) -> None:
        """A line that must not be drawn over by the bar (validation results)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            log.info("%s", message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
