"""The nested configs of `langfield reconstruct` / `demo`: every field reachable, aliases, presets, bad values."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from langfield import cli
from langfield.cli import DEMO_ITERATIONS, DEMO_MAX_GAUSSIANS, Reconstruct, _parse, main
from langfield.gaussians.strategy import ABSGRAD_GROW_GRAD2D, DefaultStrategy
from langfield.train.config import TRAIN_PRESETS, LearningRates, TrainConfig
from langfield.train.language import LanguageConfig

ROOT = Path(__file__).resolve().parents[1]


def parse(*args: str):
    return _parse(list(args), "test")


def reconstruct(*args: str) -> Reconstruct:
    cmd = parse("reconstruct", "DATA", "--out", "OUT", *args)
    assert isinstance(cmd, Reconstruct)
    return cmd


def _flags(cls: type, prefix: str) -> dict[str, str]:
    """Every (nested) dataclass field of ``cls`` -> the long option tyro should give it."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        name = f"{prefix}.{f.name.replace('_', '-')}"
        if dataclasses.is_dataclass(hint):
            out.update(_flags(hint, name))
        else:
            out[f"{cls.__name__}.{f.name}"] = "--" + name
    return out


def test_every_config_field_is_an_option_of_reconstruct_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no wrapped lines
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    help_flags = set(re.findall(r"--[A-Za-z0-9_.-]+", capsys.readouterr().out))
    expected = _flags(TrainConfig, "train") | _flags(LanguageConfig, "language")
    # the introspection itself covers the nested classes: a field added to any of them is expected here
    for cls in (TrainConfig, LearningRates, DefaultStrategy, LanguageConfig):
        assert all(f"{cls.__name__}.{f.name}" in expected for f in dataclasses.fields(cls)
                   if not dataclasses.is_dataclass(typing.get_type_hints(cls)[f.name])), cls
    missing = {k: v for k, v in expected.items() if v not in help_flags}
    assert not missing, f"config fields not reachable from `langfield reconstruct`: {missing}"


def test_nested_options_reach_the_configs():
    cmd = reconstruct("--train.lr.means", "0.001", "--train.strategy.prune-opa", "0.2", "--train.background",
                      "white", "--train.no-scale-strategy-schedule", "--language.lr", "0.5", "--language.device",
                      "meta", "--train.strategy.revised-opacity")
    assert cmd.train.lr.means == 0.001 and cmd.train.strategy.prune_opa == 0.2
    assert cmd.train.background == "white" and cmd.train.scale_strategy_schedule is False
    assert cmd.train.strategy.revised_opacity is True
    assert cmd.language.lr == 0.5 and cmd.language.device == "meta"
    # untouched fields keep the one set of defaults (TrainConfig's own, incl. its strategy recipe)
    assert dataclasses.replace(cmd.train, lr=TrainConfig().lr, background="black", scale_strategy_schedule=True,
                               strategy=TrainConfig().strategy) == TrainConfig()


ALIASES = [
    ("--iterations", "--train.iterations", "123"),
    ("--backend", "--train.backend", "torch"),
    ("--downscale", "--train.downscale", "2"),
    ("--eval-every", "--train.eval-every", "4"),
    ("--images", "--train.images", "images_8"),
    ("--seed", "--train.seed", "7"),
    ("--checkpoint-every", "--train.checkpoint-every", "50"),
    ("--max-gaussians", "--train.strategy.max-gaussians", "1000"),
    ("--features", "--language.features", "labels"),
    ("--clip", "--language.clip", "test-tiny"),
    ("--sam", "--language.sam", "vit_b"),
    ("--latent-iterations", "--language.iterations", "17"),
    ("--language-schedule", "--language.schedule", "joint"),
    ("--joint-weight", "--language.joint-weight", "0.25"),
    ("--latent-dim", "--language.latent-dim", "4"),
    ("--codec-steps", "--language.codec-steps", "99"),
]


@pytest.mark.parametrize("short,long,value", ALIASES)
def test_alias_gives_the_same_config_as_the_nested_spelling(short, long, value):
    a, b = reconstruct(short, value), reconstruct(long, value)
    assert (a.train, a.language) == (b.train, b.language)
    assert (a.train, a.language) != (reconstruct().train, reconstruct().language)  # the option did something


def test_the_short_spellings_together_build_what_the_old_flat_command_built():
    cmd = reconstruct("--iterations", "300", "--backend", "cpu", "--seed", "5", "--features", "labels",
                      "--clip", "test-tiny", "--language-schedule", "joint", "--latent-iterations", "200",
                      "--codec-steps", "300", "--quiet")
    assert cmd.train == TrainConfig(iterations=300, backend="cpu", seed=5)
    assert cmd.language == LanguageConfig(features="labels", clip="test-tiny", schedule="joint", iterations=200,
                                          codec_steps=300)
    assert cmd.quiet and not cmd.resume and cmd.preset_name() == "default"


def test_presets_set_defaults_that_explicit_options_override():
    assert typing.get_args(cli.Preset) == tuple(TRAIN_PRESETS)
    absgrad = reconstruct("--preset", "absgrad").train
    assert absgrad.strategy.absgrad is True and absgrad.strategy.grow_grad2d == ABSGRAD_GROW_GRAD2D
    default = TrainConfig()
    assert dataclasses.replace(absgrad, strategy=default.strategy) == default  # only the strategy differs
    assert dataclasses.replace(absgrad.strategy, absgrad=False, grow_grad2d=0.0002) == default.strategy
    assert reconstruct("--absgrad").train == absgrad  # --absgrad is the preset, one code path
    mixed = reconstruct("--preset", "absgrad", "--train.strategy.grow-grad2d", "0.001", "--iterations", "9")
    assert (mixed.train.strategy.absgrad, mixed.train.strategy.grow_grad2d, mixed.train.iterations) == (True, 0.001, 9)
    assert reconstruct().train == default


def test_resume_knows_whether_the_iterations_were_given():
    assert reconstruct("--resume").iterations_given is False
    assert reconstruct("--resume", "--iterations", str(TrainConfig().iterations)).iterations_given is True
    assert reconstruct("--resume", "--train.iterations=50").iterations_given is True
    assert reconstruct("--resume", "--absgrad", "--iterations", "50").train.iterations == 50


def test_demo_nests_the_train_config_with_its_own_defaults():
    demo = parse("demo", "--out", "o")
    assert demo.train.iterations == DEMO_ITERATIONS and demo.train.strategy.max_gaussians == DEMO_MAX_GAUSSIANS
    assert demo.train.strategy.prune_opa == TrainConfig().strategy.prune_opa
    small = parse("demo", "--out", "o", "--iterations", "60", "--max-gaussians", "5000", "--seed", "2")
    assert (small.train.iterations, small.train.strategy.max_gaussians, small.train.seed) == (60, 5000, 2)


@pytest.mark.parametrize("args,message", [
    (["--iterations", "0"], "iterations must be >= 1"),
    (["--max-gaussians", "-1"], "max_gaussians must be >= 1"),
    (["--train.sh-degree", "4"], "sh_degree must be in 0..3"),
    (["--downscale", "0"], "downscale must be >= 1"),
    (["--train.strategy.refine-every", "0"], "refine_every"),
    (["--joint-weight", "0"], "joint_weight must be > 0"),
    (["--latent-dim", "0"], "latent_dim must be >= 1"),
    (["--absgrad", "--preset", "default", "--iterations", "0"], "iterations must be >= 1"),
])
def test_bad_values_are_one_line_errors_with_exit_code_2(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bad option: ") and message in err and "\n" not in err
    assert not out.exists()  # refused before anything ran


def test_backend_and_default_clip_are_defined_once():
    """The backend literal and the default CLIP name are written in one module each."""
    sources = [p for d in ("langfield", "viewer") for p in (ROOT / d).rglob("*.py")]
    backend = [p for p in sources if re.search(r'Literal\[\s*"auto",\s*"torch"', p.read_text())]
    clip = [p for p in sources if "laion2b_s34b_b88k\"" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in backend] == ["langfield/render/backend.py"]
    assert [p.relative_to(ROOT).as_posix() for p in clip] == ["langfield/features/weights.py"]
