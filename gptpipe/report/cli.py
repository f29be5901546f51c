"""`gptpipe report`: one self-contained HTML page and its Markdown twin over every stage's outputs.

    gptpipe report --params params.yaml --pretrain results/pretrain \\
        --finetune results/finetune/<task>/<variant>/seed<k> [...] --bpe results/bpe \\
        --shard results/shard --ingest results/ingest/<part> [...] --output results/report

Writes `OUTDIR/index.html` (figures inlined), `OUTDIR/report.md`, the figures as `OUTDIR/*.png`
and `OUTDIR/report.json` (every table row, the figures, compute and provenance), all at once or
not at all. Nothing is recomputed: every number is a stage's own.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl
import yaml

from ..atomic import atomic_path, write_json, write_text
from ..cli import run_cli, stage_parser
from ..errors import GptpipeError
from ..config import (
    ReportConfig,
    load_params,
    parse_set,
    resolve_section,
    validate_params,
)
from . import chance, collect, figures, glue_zip, provenance, render, tables, transfer
from . import scores as dvc_scores
from . import zeroshot as zeroshot_report

log = logging.getLogger(__name__)

# name -> (title, caption); `<name>.png` is written beside the report (workflow/report/*.rst).
FIGURES: dict[str, tuple[str, str]] = {
    "pretrain_loss": ("Pre-training loss", "Training loss (mean over each logging interval) and "
                      "validation loss in nats per token against tokens seen; dashed: the "
                      "unigram model's validation loss."),
    "pretrain_lr": ("Learning rate", "Learning rate at each logged update: linear warm-up, "
                    "then cosine decay."),
    "finetune_scores": ("Fine-tuning scores", "Ours (bars: mean over seeds; whiskers: sample "
                        "std) beside the paper's figures (black ticks), Tables 2-4, in percent; red "
                        "marks: chance on the split scored."),
    "ablations": ("Ablations", "Table 5: full model, without pre-training, without the "
                  "auxiliary LM loss, and the LSTM with it; mean ± std over seeds, the paper's "
                  "figures as ticks, chance in red."),
}
_SPLIT_NOTE = ("Ours: mean ± sample standard deviation over n seeds, measured on the labelled "
               "test split where one exists, else on dev. The paper's GLUE figures are the "
               "evaluation server's test scores, so Δ (ours − paper, percentage points) is only "
               "approximate for them. 'not run': no job of that task and variant was given. "
               "Chance: a label-blind baseline on the split ours is measured on (majority "
               "class for accuracy and F1, the most frequent answer for multiple choice, 0 for "
               "MCC and correlations); '—' where the run did not record it.")


_INPUT_HEADERS = {"name": "Name", "role": "Role", "kind": "Kind", "path": "Path under data/",
                  "checksum": "Checksum", "index_checksum": "Index checksum",
                  "checked": "Checksum agrees with", "date": "Dump date"}


@dataclass(frozen=True)
class Inputs:
    """The stage folders the report reads (the rule passes exactly its inputs)."""

    pretrain: Path
    finetune: tuple[Path, ...]
    bpe: Path
    shard: Path
    ingest: tuple[Path, ...]
    zeroshot: Path | None = None  # the `zeroshot` stage's folder (section "Zero-shot")


def _recorded(pre: collect.Pretrain, runs: Sequence[Mapping], bpe: Mapping, shard: Mapping,
              parts: Sequence[Mapping], inputs: Inputs) -> list[tuple[str, str, Mapping]]:
    """(section, file, config) as each stage saved it beside its outputs."""
    out = [("ingest", p["file"], p.get("config") or {}) for p in parts]
    out += [("bpe", bpe["file"], bpe.get("config") or {}),
            ("shard", shard["file"], shard.get("config") or {})]
    if pre.config:
        where = str(inputs.pretrain / "config.json")
        out += [(s, where, pre.config.get(s) or {}) for s in ("model", "pretrain")]
    out += [("finetune", r["file"], r.get("config") or {}) for r in runs]
    return out


def _figures(pre: collect.Pretrain, results: Mapping[str, pl.DataFrame]) -> list[render.Figure]:
    shown = pl.concat([results[t] for t in ("table2", "table3", "table4")])
    pngs = {
        "pretrain_loss": figures.loss_curve(pre.curve, pre.summary.get("unigram_val_loss")),
        "pretrain_lr": figures.lr_curve(pre.curve),
        "finetune_scores": figures.task_scores(shown),
        "ablations": figures.ablations(results["table5"]),
    }
    return [render.Figure(name, *FIGURES[name], pngs[name]) for name in FIGURES]


def _kv(pairs: Sequence[tuple[str, Any]]) -> pl.DataFrame:
    rows = [(k, "—" if v is None else str(v)) for k, v in pairs]
    return pl.DataFrame(rows, schema={"Fact": pl.Utf8, "Value": pl.Utf8}, orient="row")


def _data_sections(bpe: Mapping, shard: Mapping, parts: Sequence[Mapping]) -> list[render.Section]:
    tok = _kv([("vocabulary (incl. special tokens)", f"{bpe['vocab_size']:,}"),
               ("style", bpe["style"]), ("tokenizer sha256", bpe["tokenizer_sha256"]),
               ("shard format", shard.get("format")), ("context (tokens)", shard["context"]),
               ("token dtype", shard["dtype"])]
              + [(f"{name} split", f"{s['documents']} documents, {s['samples']:,} windows, "
                  f"{s['tokens']:,} tokens in {s['shards']} shards")
                 for name, s in shard["splits"].items()])
    ingest = pl.DataFrame([
        {"Part": p["part"], "Input": str(p.get("input")), "Pages seen": f"{p['pages_seen']:,}",
         "Kept": f"{p['pages_kept']:,}",
         "Dropped": ", ".join(f"{k} {v}" for k, v in (p["dropped"] or {}).items() if v) or "none",
         "Train / val": " / ".join(str((p.get("splits") or {}).get(s, "—"))
                                   for s in ("train", "val"))}
        for p in parts], orient="row")
    return [render.Section("Tokenizer and shards", table=tok, level=3),
            render.Section("Ingested dump parts", table=ingest, level=3)]


def _provenance_sections(prov: Mapping, data: list[render.Section]) -> render.Section:
    git = prov["git"]
    dirty = {True: "yes", False: "no", None: "unknown"}[git["dirty"]]
    code = _kv([("git commit", git["commit"]), ("uncommitted changes", dirty),
                ("dvc.lock sha256", prov["dvc_lock_sha256"] or "no dvc.lock")])
    inputs = pl.DataFrame([{_INPUT_HEADERS[k]: "—" if v is None else str(v)
                            for k, v in row.items()} for row in prov["inputs"]],
                          orient="row") if prov["inputs"] else None
    dumps = tuple(f"{r['name']}: {r['path']} (dump of {r['date']})" for r in prov["inputs"]
                  if r["role"] == "dump")
    packages = _kv(sorted(prov["packages"].items()))
    checks = tuple(prov["checks"]) or ("every stage ran with the params resolved here, and one "
                                       "tokenizer throughout",)
    params = yaml.safe_dump(prov["params"], sort_keys=False, allow_unicode=True)
    return render.Section("Provenance", children=(
        render.Section("Code", table=code, level=3),
        render.Section("Wikipedia dump", items=dumps or ("no dump part declared",), level=3),
        render.Section("Declared inputs and checksums", table=inputs,
                       text="" if inputs is not None else "none declared", level=3),
        *data,
        render.Section("Packages", table=packages, level=3),
        render.Section("Consistency checks", items=checks, level=3),
        render.Section("Resolved params (every section)", code=params, level=3),
    ))


def _sections(pre: collect.Pretrain, results: Mapping[str, pl.DataFrame],
              figs: Sequence[render.Figure], compute: pl.DataFrame,
              notes: Mapping[str, list[str]], prov_section: render.Section
              ) -> list[render.Section]:
    by_name = {f.name: f for f in figs}
    result_tables = tuple(
        render.Section(tables.TITLES[name], level=3,
                       table=chance.display(results[name], with_variant=(name == "table5")),
                       figures=(by_name["ablations"],) if name == "table5" else ())
        for name in ("table2", "table3", "table4", "table5", "other")
        if name != "other" or not results[name].is_empty()
    )
    note_sections = tuple(render.Section(task, items=tuple(items), level=3)
                          for task, items in notes.items() if items)
    return [
        render.Section("Pre-training", table=tables.pretrain_facts(pre.summary),
                       figures=(by_name["pretrain_loss"], by_name["pretrain_lr"])),
        render.Section("Fine-tuning beside the paper", text=_SPLIT_NOTE,
                       figures=(by_name["finetune_scores"],), children=result_tables),
        render.Section("Per-task notes", children=note_sections,
                       text="" if note_sections else "no notes: nothing skipped, cut or capped"),
        render.Section("Compute used", table=tables.display_compute(compute),
                       text="Device-hours = processes x seconds; pre-training counts the time "
                            "inside updates over all resumed runs, fine-tuning each job's total."),
        prov_section,
    ]


def run(cfg: ReportConfig, params: Mapping, inputs: Inputs, output: Path,
        repo: Path = Path("."), not_run: Mapping[str, str] | None = None) -> dict:
    """Write the report folder `output`; return what report.json holds.

    `params`: the whole params mapping (every section is resolved for the provenance block;
    `cfg` replaces its `report` section). `repo`: where git and dvc.lock are looked up.
    `not_run`: task -> why the workflow left it out ("not run: ... (how to run it)").
    """
    not_run = dict(not_run or {})
    resolved = {**validate_params(params), "report": cfg}
    pre = collect.load_pretrain(inputs.pretrain)
    runs = collect.load_runs(inputs.finetune)
    bpe, shard = collect.load_bpe(inputs.bpe), collect.load_shard(inputs.shard)
    parts = collect.load_ingest(inputs.ingest)
    paper_runs = transfer.without_transfer(runs)  # Figure 2's runs have a section of their own
    results = tables.paper_tables(paper_runs, collect.scores_frame(paper_runs), not_run)
    results = chance.with_chance(results, runs)  # a "chance" column beside every score
    compute = tables.compute_frame(pre.summary, runs)
    notes = collect.task_notes(runs, cfg.max_notes)
    prov = provenance.collect(resolved, repo, _recorded(pre, runs, bpe, shard, parts, inputs),
                              provenance.tokenizer_checks(bpe, shard, runs))
    figs = _figures(pre, results)
    sections = _sections(pre, results, figs, compute, notes,
                         _provenance_sections(prov, _data_sections(bpe, shard, parts)))
    archive = glue_zip.collect(runs)
    sections.insert(2, glue_zip.section(archive))  # after "Fine-tuning beside the paper"
    layers = transfer.layers_section(runs, resolved["finetune"], not_run)  # Figure 2, left
    figs = [*figs, *layers.figures]
    sections.insert(2, layers.section)  # after "Fine-tuning beside the paper"
    zs = zeroshot_report.section(inputs.zeroshot) if inputs.zeroshot else None
    if zs:  # Figure 2 (right), after its left half ("Layers transferred")
        sections.insert(3, zs[0])
        figs = [*figs, zs[1]]
    doc = {
        "title": cfg.title, "scale": params.get("scale", "tiny"),
        "tables": {name: frame.to_dicts() for name, frame in results.items()},
        "figures": [{"name": f.name, "file": f.file, "title": f.title, "caption": f.caption,
                     "bytes": len(f.png), "sha256": hashlib.sha256(f.png).hexdigest()}
                    for f in figs],
        "pretrain": pre.summary, "compute": compute.to_dicts(), "notes": notes,
        "not_run": not_run, "glue_archive": glue_zip.summary(archive),
        "layers_transferred": layers.rows,
        "tokenizer": bpe, "shards": shard, "ingest": parts, "provenance": prov,
        "zeroshot": zs[2] if zs else None,
        "jobs": [{"task": r["task"], "variant": r["variant"], "seed": r["seed"], "file": r["file"]}
                 for r in runs],
    }
    with atomic_path(output, is_dir=True) as tmp:
        for fig in figs:
            (tmp / fig.file).write_bytes(fig.png)
        glue_zip.write_archive(archive, tmp / glue_zip.ARCHIVE)
        write_text(tmp / "index.html", render.html_page(cfg.title, sections))
        write_text(tmp / "report.md", render.markdown(cfg.title, sections))
        write_json(tmp / "report.json", doc)
        dvc_scores.write(tmp, runs, collect.scores_frame(runs))  # for `dvc metrics`, `plots`
    log.info("wrote %s: %d fine-tuning job(s), %d figure(s)", output, len(runs), len(figs))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("report", __doc__.split("\n\n")[0])
    parser.add_argument("--pretrain", required=True, type=Path, metavar="DIR",
                        help="`pretrain` output folder (metrics.json, metrics.jsonl)")
    parser.add_argument("--finetune", nargs="+", default=[], type=Path, metavar="DIR",
                        help="`finetune` job folders (…/<task>/<variant>/seed<k>)")
    parser.add_argument("--bpe", required=True, type=Path, metavar="DIR",
                        help="`bpe` output folder (bpe.json)")
    parser.add_argument("--shard", required=True, type=Path, metavar="DIR",
                        help="`shard` output folder (manifest.json)")
    parser.add_argument("--ingest", nargs="+", required=True, type=Path, metavar="DIR",
                        help="`ingest` output folders (stats.json)")
    parser.add_argument("--zeroshot", type=Path, metavar="DIR",
                        help="`zeroshot` output folder (metrics.json): the Zero-shot section")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="report folder to write (replaced as a whole)")
    parser.add_argument("--not-run", action="append", default=[], metavar="TASK=WHY",
                        help="a task the workflow left out on purpose, and why (repeatable)")

    def body(args: argparse.Namespace) -> None:
        params = load_params(args.params)
        if args.scale:
            params = {**params, "scale": args.scale}
        cfg = resolve_section(params, "report", parse_set(args.set), where=str(args.params))
        inputs = Inputs(args.pretrain, tuple(args.finetune), args.bpe, args.shard,
                        tuple(args.ingest), args.zeroshot)
        not_run = {}
        for item in args.not_run:
            task, sep, why = item.partition("=")
            if not sep or not task or not why:
                raise GptpipeError(f"report: --not-run {item!r}: expected TASK=WHY")
            not_run[task] = why
        run(cfg, params, inputs, args.output, not_run=not_run)

    return run_cli("report", argv, parser, body)
