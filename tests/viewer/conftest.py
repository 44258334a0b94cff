"""A tiny trained language scene (labels + test-tiny CLIP) shared by the viewer tests, and a copy without language."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# Fewer steps than tests/test_cli_language.py: the viewer only needs labels to be told apart.
GEOMETRY_ITERATIONS = 100
LATENT_ITERATIONS = 150
CODEC_STEPS = 600


@pytest.fixture(scope="session")
def viewer_scene(synthetic_dataset, tmp_path_factory) -> Path:
    from langfield.cli import main

    out = tmp_path_factory.mktemp("viewer") / "scene"
    rc = main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", str(GEOMETRY_ITERATIONS),
               "--backend", "cpu", "--features", "labels", "--clip", "test-tiny", "--latent-iterations",
               str(LATENT_ITERATIONS), "--codec-steps", str(CODEC_STEPS), "--checkpoint-every", "0", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def plain_scene(viewer_scene, tmp_path_factory) -> Path:
    """The same Gaussians with the language section removed from config.json (the PLY keeps its latent columns)."""
    out = tmp_path_factory.mktemp("viewer_plain") / "scene"
    out.mkdir()
    for name in ("config.json", "point_cloud.ply", "cameras.json"):
        shutil.copy2(viewer_scene / name, out / name)
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("language")
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="session")
def core(viewer_scene):
    from langfield.viewer import RenderCore

    return RenderCore(viewer_scene, backend="cpu")
