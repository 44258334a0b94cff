"""The `langfield` command: end-to-end reconstruct / render / eval / info and its error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from langfield.cli import main
from langfield.eval.metrics import psnr
from langfield.scene import load_scene, write_transforms_json
from langfield_test_helpers import one_error_line as _one_error_line  # registered by tests/conftest.py

ITERATIONS = 100


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "scene"
    rc = main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", str(ITERATIONS),
               "--backend", "auto", "--quiet", "--checkpoint-every", "50", "--max-gaussians", "12000"])
    assert rc == 0
    return out




# --------------------------------------------------------------------------- end to end


def test_reconstruct_beats_mean_colour_baseline(trained, synthetic_dataset):
    report = json.loads((trained / "eval" / "report.json").read_text())
    assert report["split"] == "eval" and report["num_views"] == 4
    assert report["iterations"] == ITERATIONS and report["num_gaussians"] > 0
    # Baseline: predict every held-out pixel as the mean training colour.
    meta = json.loads((synthetic_dataset / "transforms.json").read_text())
    load = lambda rel: np.asarray(Image.open(synthetic_dataset / rel), dtype=np.float32) / 255.0  # noqa: E731
    mean = np.mean([load(f).reshape(-1, 3).mean(0) for f in meta["train_filenames"]], axis=0)
    import torch

    base = np.mean([psnr(torch.from_numpy(np.broadcast_to(mean, load(f).shape).copy()), torch.from_numpy(load(f)))
                    for f in meta["test_filenames"]])
    assert report["mean_psnr"] > base + 3.0, (report["mean_psnr"], base)
    assert (trained / "eval" / "contact_sheet.png").is_file()


def test_scene_directory_layout(trained, synthetic_dataset):
    for name in ("config.json", "point_cloud.ply", "cameras.json"):
        assert (trained / name).is_file()
    ckpts = sorted(p.name for p in (trained / "checkpoints").glob("ckpt_*.pt"))
    assert ckpts == ["ckpt_000050.pt", f"ckpt_{ITERATIONS:06d}.pt"]
    scene = load_scene(trained)
    assert scene.config["data"] == str(synthetic_dataset.resolve())
    assert scene.config["capture_kind"] == "nerfstudio" and scene.config["finished"] is True
    assert len(scene.cameras_of("train")) == 12 and len(scene.cameras_of("eval")) == 4
    # cameras.json holds OpenCV c2w poses: the dataset's OpenGL poses with y and z flipped
    meta = json.loads((synthetic_dataset / "transforms.json").read_text())
    gl = np.asarray(meta["frames"][1]["transform_matrix"])
    cam = next(c for c in scene.cameras if c.name == meta["frames"][1]["file_path"])
    np.testing.assert_allclose(cam.c2w, gl @ np.diag([1, -1, -1, 1]), atol=1e-5)


def test_render_cameras_writes_basenames(trained, tmp_path):
    scene = load_scene(trained)
    cams = scene.cameras_of("eval")
    tj = tmp_path / "cams.json"
    write_transforms_json(tj, cams)
    out = tmp_path / "renders"
    assert main(["render", str(trained), "--cameras", str(tj), "--out", str(out)]) == 0
    for cam in cams:
        base = Path(cam.name).name
        img = np.asarray(Image.open(out / "rgb" / base))
        assert img.shape == (cam.height, cam.width, 3)
        depth = np.load(out / "depth" / f"{Path(base).stem}.npy")
        assert depth.dtype == np.float32 and depth.shape == (cam.height, cam.width)
        # rendered depth agrees with the dataset's depth map (uint16 PNG, metres = value * scale)
        meta = json.loads((Path(scene.config["data"]) / "transforms.json").read_text())
        frame = next(f for f in meta["frames"] if f["file_path"] == cam.name)
        gt = np.asarray(Image.open(Path(scene.config["data"]) / frame["depth_file_path"]), dtype=np.float64)
        gt *= meta.get("depth_unit_scale_factor", 0.001)
        assert np.median(np.abs(depth - gt)[gt > 0]) < 0.15 * np.median(gt[gt > 0])
        assert (out / "depth" / f"{Path(base).stem}.png").is_file()
    # the rendered held-out view resembles the dataset image it was named after
    gt = np.asarray(Image.open(Path(scene.config["data"]) / cams[0].name), dtype=np.float32)
    got = np.asarray(Image.open(out / "rgb" / Path(cams[0].name).name), dtype=np.float32)
    assert np.abs(gt - got).mean() < np.abs(gt - gt.mean()).mean()


def test_render_orbit(trained, tmp_path):
    assert main(["render", str(trained), "--out", str(tmp_path), "--orbit", "3"]) == 0
    frames = sorted((tmp_path / "orbit" / "rgb").glob("orbit_*.png"))
    assert len(frames) == 3
    assert any((tmp_path / f"orbit{ext}").is_file() for ext in (".mp4", ".gif"))
    # orbit cameras are upright (image y points against the scene cameras' up) and look at the centre
    from langfield.cli_render import orbit_cameras

    scene = load_scene(trained)
    up = -np.mean([c.c2w[:3, 1] for c in scene.cameras], axis=0)
    centre = scene.params["means"].detach().median(dim=0).values.numpy()
    for cam in orbit_cameras(scene, 4):
        assert float(-cam.c2w[:3, 1] @ up) > 0.5 * np.linalg.norm(up)
        to_centre = centre - cam.c2w[:3, 3]
        assert float(cam.c2w[:3, 2] @ to_centre) > 0.99 * np.linalg.norm(to_centre)
        assert np.linalg.det(cam.c2w[:3, :3]) > 0.99


def test_eval_and_info_commands(trained, capsys):
    assert main(["eval", str(trained)]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((trained / "eval" / "report.json").read_text())
    assert report["mean_psnr"] == pytest.approx(saved["mean_psnr"], abs=1e-6)
    assert main(["info", str(trained)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_gaussians"] == load_scene(trained).num_gaussians
    assert info["sh_degree"] == 3 and info["latent_dim"] == 0
    assert info["cameras"] == {"train": 12, "eval": 4}


def test_existing_output_needs_overwrite_and_overwrite_replaces(trained, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "scene"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "2"]) == 2
    assert "--overwrite" in _one_error_line(capsys)
    assert (out / "keep.txt").is_file()
    # a failing overwrite run leaves the old directory untouched
    assert main(["reconstruct", str(tmp_path / "missing"), "--out", str(out), "--overwrite", "--iterations", "2"]) == 2
    _one_error_line(capsys)
    assert (out / "keep.txt").read_text() == "old"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--overwrite", "--iterations", "3",
                 "--quiet", "--backend", "auto"]) == 0
    assert not (out / "keep.txt").exists() and (out / "point_cloud.ply").is_file()
    assert not list(tmp_path.glob(".scene.*"))


# --------------------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    "args, needle",
    [
        (["reconstruct", "{missing}", "--out", "{out}"], "no such file"),
        (["reconstruct", "{unposed}", "--out", "{out}", "--quiet"], "structure from motion"),
        (["reconstruct", "{missing}", "--out", "{out}", "--resume"], "nothing to resume"),
        (["reconstruct", "{missing}", "--out", "{out}", "--downscale", "0"], "downscale"),
        (["render", "{missing}", "--out", "{out}"], "does not exist"),
        (["info", "{empty}"], "config.json"),
        (["eval", "{empty}"], "config.json"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, needle, tmp_path, capsys):
    unposed = tmp_path / "unposed"
    unposed.mkdir()
    for i in range(3):
        Image.fromarray(np.full((24, 32, 3), 40 * i, np.uint8)).save(unposed / f"{i}.png")
    (tmp_path / "empty").mkdir()
    subs = {"missing": tmp_path / "missing", "out": tmp_path / "out", "unposed": unposed, "empty": tmp_path / "empty"}
    assert main([a.format(**subs) for a in args]) == 2
    assert needle in _one_error_line(capsys)


def test_render_rejects_bad_cameras_file(trained, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["render", str(trained), "--cameras", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert str(bad) in _one_error_line(capsys)
    bad.write_text(json.dumps({"frames": [{"file_path": "a.png", "w": 8}]}))
    assert main(["render", str(trained), "--cameras", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "frame 0" in _one_error_line(capsys)


def test_process_exit_code_and_debug_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "langfield", "info", str(tmp_path / "nope")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(cmd, capture_output=True, text=True, env={**env, "LANGFIELD_DEBUG": "1"}, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_saved_ply_is_bit_exact_and_renders_identically(trained):
    """The PLY that reconstruct writes equals the final trained state bit for bit, and renders the same."""
    import torch

    from langfield.gaussians.ply import load_ply
    from langfield.scene import latest_checkpoint
    from langfield.train.checkpoint import load_checkpoint
    from langfield.render.views import render_params

    final = load_checkpoint(latest_checkpoint(trained))["params"]
    loaded = load_ply(trained / "point_cloud.ply")
    assert set(loaded.keys()) == set(final.keys())
    for key in final:
        assert torch.equal(loaded[key].detach(), final[key]), key
    cam = load_scene(trained).cameras[0]
    view = cam.to_view()
    bg = torch.zeros(3)
    with torch.no_grad():
        a = render_params(loaded, view, sh_degree=3, background=bg, backend="cpu").rgb
        b = render_params(torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in final.items()}), view,
                          sh_degree=3, background=bg, backend="cpu").rgb
    assert a.abs().sum() > 0 and torch.equal(a, b)
