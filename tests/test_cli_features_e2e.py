"""SAM+CLIP and dense features through the whole CLI path (reconstruct -> query) with the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from langfield.cli import main
from langfield.features import DENSE_LEVELS, SAM_LEVELS

TINY = "test-tiny"


@pytest.mark.parametrize(
    "method, extra, levels",
    [
        ("sam-clip", ["--sam", TINY], SAM_LEVELS),
        ("dense", [], DENSE_LEVELS),
        # Joint schedule on SAM's three-level features (it was only tested on labels).
        ("sam-clip", ["--sam", TINY, "--language-schedule", "joint"], SAM_LEVELS),
    ],
)
def test_reconstruct_and_query_with_image_features(method, extra, levels, synthetic_dataset, tmp_path):
    from langfield.scene import load_scene

    out = tmp_path / "scene"
    rc = main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", "60", "--backend", "cpu",
               "--features", method, "--clip", TINY, *extra, "--latent-iterations", "60", "--language.refine-iterations", "60", "--codec-steps", "100",
               "--latent-dim", "4", "--checkpoint-every", "0", "--quiet"])
    assert rc == 0
    lang = json.loads((out / "config.json").read_text())["language"]
    assert lang["method"] == method and lang["clip"] == TINY
    assert lang["levels"] == list(levels) and lang["num_levels"] == len(levels) and lang["latent_dim"] == 4
    scene = load_scene(out)
    assert scene.params["latents"].shape == (scene.num_gaussians, len(levels) * 4)
    joint = "joint" in extra
    assert lang["schedule"] == ("joint" if joint else "refine")
    key = "joint_latent_loss" if joint else "latent_loss"
    assert lang[f"{key}_last"] < lang[f"{key}_first"]  # the latent stage learned something

    q = tmp_path / "q"
    assert main(["query", str(out), "red chair", "--out", str(q), "--backend", "cpu"]) == 0
    manifest = json.loads((q / "manifest.json").read_text())
    entries = manifest["entries"]
    assert entries and all(e["query"] == "red chair" and 0 <= e["level"] < len(levels) for e in entries)
    for e in entries:
        rel = np.load(q / e["relevancy"])
        mask = np.asarray(Image.open(q / e["mask"]))
        assert rel.dtype == np.float32 and rel.ndim == 2 and np.isfinite(rel).all()
        assert mask.shape[:2] == rel.shape and (0 <= rel).all() and (rel <= 1).all()
    assert len(entries) == 4  # one per held-out view of the fixture (12 train + 4 eval)
