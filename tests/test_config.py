"""Config: every shipped params file parses; bad keys fail naming their path; overrides flow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gptpipe import workflow as gw
from gptpipe.config import (
    SCALES,
    BpeConfig,
    ConfigError,
    load_params,
    parse_set,
    resolve_section,
    validate_params,
)
from gptpipe.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("scale", SCALES)
def test_shipped_params_validate_at_every_scale(scale):
    params = load_params(REPO / "params.yaml") | {"scale": scale}
    resolved = validate_params(params)
    assert set(resolved) >= {"fetch", "ingest", "bpe", "shard"}


def test_presets_only_name_known_sections_and_keys():
    for scale, sections in PRESETS.items():
        for section, values in sections.items():
            resolve_section({"scale": scale, section: {}}, section)  # raises on unknown keys
            assert values, f"{scale}.{section} is an empty preset"


def test_defaults_are_the_papers():
    assert BpeConfig().vocab_size == 40_478
    assert resolve_section({"scale": "gpt1"}, "shard").context == 512


@pytest.mark.parametrize(
    "params, message",
    [
        ({"bpe": {"vocab_sise": 1}}, "params.yaml: bpe.vocab_sise: unknown key"),
        ({"bpe": {"vocab_size": "big"}}, "params.yaml: bpe.vocab_size: expected int, got 'big'"),
        ({"bpe": {"vocab_size": True}}, "bpe.vocab_size: expected int"),
        ({"bpe": {"style": "gpt2"}}, "bpe.style: 'gpt2' is not one of"),
        ({"shard": {"context": 1}}, "params.yaml: shard: context >= 2"),
        ({"scale": "huge"}, "scale: 'huge' is not one of"),
        ({"shrad": {}}, "shrad: unknown top-level key"),
        ({"fetch": {"sources": [{"name": "x", "path": "a"}]}}, "fetch.sources[0].checksum"),
        (
            {"fetch": {"sources": [{"name": "x", "path": "/etc/a", "checksum": "sha256:" + "ab" * 32,
                                    "url": "http://h/a"}]}},
            "must be relative",
        ),
    ],
)
def test_bad_params_name_the_key(params, message):
    with pytest.raises(ConfigError, match=None) as exc:
        validate_params(params)
    assert message in str(exc.value)


def test_duplicate_source_names_fail():
    src = {"name": "a", "path": "a", "checksum": "md5:" + "0" * 32, "url": "http://h/a"}
    with pytest.raises(ConfigError, match="duplicate source names: a"):
        resolve_section({"fetch": {"sources": [src, src]}}, "fetch")


def test_precedence_default_preset_file_set():
    assert resolve_section({"scale": "gpt1"}, "bpe").vocab_size == 40_478
    assert resolve_section({"scale": "tiny"}, "bpe").vocab_size == PRESETS["tiny"]["bpe"]["vocab_size"]
    params = {"scale": "tiny", "bpe": {"vocab_size": 2048}}
    assert resolve_section(params, "bpe").vocab_size == 2048
    assert resolve_section(params, "bpe", parse_set(["vocab_size=1024"])).vocab_size == 1024


def test_params_yaml_lists_every_knob_and_null_keeps_the_preset():
    """DVC's `-S section.key=value` only changes keys the file has: every knob is listed, as
    `null` ("the preset's value") unless deliberately set."""
    import dataclasses

    from gptpipe.config import SECTIONS

    params = load_params(REPO / "params.yaml")
    for section, cls in SECTIONS.items():
        # fetch.sources are declarations, not knobs: gptpipe/fetch/sources.yaml holds them
        knobs = {f.name for f in dataclasses.fields(cls)} - ({"sources"} if section == "fetch"
                                                              else set())
        assert set(params[section]) == knobs, section
    tiny = PRESETS["tiny"]
    assert resolve_section(params, "bpe").vocab_size == tiny["bpe"]["vocab_size"]
    assert resolve_section(params | {"scale": "gpt1"}, "pretrain").lr == 2.5e-4
    set_lr = params | {"pretrain": {**params["pretrain"], "lr": 3e-4}}
    assert resolve_section(set_lr, "pretrain").lr == 3e-4


def test_parse_set_types_values_as_yaml():
    assert parse_set(["a=1", "b.c=2.5e-4", "d=[x, y]", "e=true", "f=text"]) == {
        "a": 1, "b": {"c": 2.5e-4}, "d": ["x", "y"], "e": True, "f": "text",
    }
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["novalue"])


def test_float_knobs_accept_yaml11_exponents():
    assert resolve_section({"ingest": {"val_fraction": "5e-3"}}, "ingest").val_fraction == 0.005


def test_snakemake_config_strings_are_retyped_into_set_flags():
    file_params = {"scale": "tiny", "bpe": {}}
    # What `snakemake --config bpe='{vocab_size: 4096}' scale=micro` gives the Snakefile:
    config = {"scale": "micro", "bpe": {"vocab_size": "4096"}}
    assert gw.cli_overrides(file_params, config, "bpe") == "--scale micro --set vocab_size=4096"
    assert gw.cli_overrides(file_params, file_params, "bpe") == ""
    assert '"vocab_size": 4096' in gw.knobs(file_params, config, "bpe")
    with pytest.raises(ConfigError, match="bpe.vocab_size: expected int"):
        gw.validate(file_params, {"bpe": {"vocab_size": "lots"}})


def test_snakemake_reports_a_bad_key_before_any_job(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1",
         "--config", "bpe={vocab_sise: 10}"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert res.returncode != 0
    assert "bpe.vocab_sise: unknown key" in res.stdout + res.stderr


def test_stage_cli_reads_its_section_and_rejects_unknown_set(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "gptpipe", "bpe", "--params", str(REPO / "params.yaml"),
         "--set", "vocab_sise=5", "--ingest", str(tmp_path), "--output", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"gptpipe bpe: error: {REPO / 'params.yaml'}: bpe.vocab_sise: unknown key "
        "(known: exact_merges, limit_alphabet, max_chars, min_frequency, style, vocab_size)"
    ]


@pytest.mark.parametrize("stage", ["fetch", "ingest", "bpe", "shard"])
def test_every_stage_has_help(stage):
    res = subprocess.run([sys.executable, "-m", "gptpipe", stage, "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "--params" in res.stdout


def test_every_declarable_builder_has_its_inputs():
    """`Source.builder`'s allowed values and the table of builders name the same ones."""
    import typing

    from gptpipe.config import BUILDERS, Source

    literal = typing.get_args(typing.get_type_hints(Source)["builder"])[0]
    assert set(typing.get_args(literal)) == set(BUILDERS)
