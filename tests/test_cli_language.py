"""`langfield reconstruct --features labels`, query, select, eval-queries, weights, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from langfield.cli import main

GEOMETRY_ITERATIONS = 150
LATENT_ITERATIONS = 200
TINY = "test-tiny"


@pytest.fixture(scope="module")
def lang_scene(synthetic_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lang") / "scene"
    rc = main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", str(GEOMETRY_ITERATIONS),
               "--backend", "cpu", "--features", "labels", "--clip", TINY, "--latent-iterations",
               str(LATENT_ITERATIONS), "--codec-steps", "1000", "--checkpoint-every", "0", "--quiet"])
    assert rc == 0
    return out


def _eval_semantics(data: Path) -> dict[str, tuple[np.ndarray, dict]]:
    from langfield.sources import load_capture, load_views

    cap = load_capture(data)
    views = load_views(cap, cap.eval_ids, device="cpu")
    return {v.name: v.semantics.numpy() for v in views}, cap.labels


def test_reconstruct_writes_language_scene(lang_scene):
    from langfield.scene import load_scene

    cfg = json.loads((lang_scene / "config.json").read_text())
    lang = cfg["language"]
    assert lang["method"] == "labels" and lang["clip"] == TINY
    assert lang["levels"] == ["part", "whole"] and lang["num_levels"] == 2
    assert (lang_scene / "codec" / "codec.pt").is_file() and (lang_scene / "codec" / "codec.json").is_file()
    assert any((lang_scene / "features_cache").rglob("*.pt"))
    scene = load_scene(lang_scene)
    assert scene.params["latents"].shape == (scene.num_gaussians, lang["num_levels"] * lang["latent_dim"])
    assert lang["latent_loss_last"] < 0.5 * lang["latent_loss_first"]
    assert lang["codec_report"]["heldout_cosine"] > 0.9


def test_query_manifest_and_localisation(lang_scene, synthetic_dataset, tmp_path, caplog):
    out = tmp_path / "q"
    texts = ["floor", "wall"]
    assert main(["query", str(lang_scene), *texts, "--eval-views", "--out", str(out), "--backend", "cpu"]) == 0
    assert "only exact label names" in caplog.text  # the test-tiny banner (a logging warning)
    manifest = json.loads((out / "manifest.json").read_text())
    sem, labels = _eval_semantics(synthetic_dataset)
    entries = manifest["entries"]
    assert len(entries) == len(sem) * len(texts)
    assert {e["frame"] for e in entries} == set(sem)
    hits = {t: 0 for t in texts}
    for e in entries:
        rel = np.load(out / e["relevancy"])
        assert rel.dtype == np.float32 and rel.shape == (48, 64)
        assert 0.0 <= rel.min() and rel.max() <= 1.0
        assert np.asarray(Image.open(out / e["mask"])).shape == (48, 64)
        assert np.asarray(Image.open(out / e["overlay"])).shape == (48, 64, 3)
        assert e["level"] in (0, 1)
        ids = [i for i, lab in labels.items() if e["query"] in (lab.part, lab.whole)]
        y, x = np.unravel_index(np.argmax(rel), rel.shape)
        hits[e["query"]] += bool(np.isin(sem[e["frame"]][y, x], ids))
    for t in texts:  # "most held-out views"
        assert hits[t] >= 0.75 * len(sem), (t, hits)


def test_query_with_cameras_file_and_fixed_level(lang_scene, tmp_path):
    from langfield.scene import load_scene, write_transforms_json

    cams = load_scene(lang_scene).cameras_of("train")[:2]
    tj = tmp_path / "cams.json"
    write_transforms_json(tj, cams)
    out = tmp_path / "q"
    assert main(["query", str(lang_scene), "rug", "--cameras", str(tj), "--out", str(out), "--level", "1",
                 "--backend", "cpu"]) == 0
    entries = json.loads((out / "manifest.json").read_text())["entries"]
    assert [e["frame"] for e in entries] == [c.name for c in cams]
    assert all(e["level"] == 1 for e in entries)


def test_select_exports_relevant_gaussians(lang_scene, tmp_path, capsys):
    from langfield.gaussians.ply import load_ply
    from langfield.scene import load_scene

    out = tmp_path / "floor.ply"
    assert main(["select", str(lang_scene), "floor", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    scene = load_scene(lang_scene)
    sel = load_ply(out)
    assert 0 < res["selected"] < scene.num_gaussians
    assert sel["means"].shape[0] == res["selected"]
    assert "latents" in sel and sel["latents"].shape[1] == scene.params["latents"].shape[1]
    assert res["max_relevancy"] > 0.5
    means = scene.params["means"].detach().numpy()
    assert np.all(np.asarray(res["max_point"]) >= means.min(0) - 1e-5)
    assert np.all(np.asarray(res["max_point"]) <= means.max(0) + 1e-5)


def test_eval_queries_report(lang_scene, capsys):
    assert main(["eval-queries", str(lang_scene), "--backend", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((lang_scene / "eval" / "queries.json").read_text())
    assert printed["mean"] == report["mean"]
    for q in ("floor", "wall"):
        assert report["per_query"][q]["loc_mask"] >= 0.75
        assert 0.0 <= report["per_query"][q]["iou"] <= 1.0
    assert report["mean"]["count"] == len(report["records"]) > 0
    assert 0.0 <= report["mean"]["iou"] <= 1.0
    # the latent field itself separates the labels on held-out views
    assert set(report["closed_set_accuracy"]) == {"part", "whole"}
    assert min(report["closed_set_accuracy"].values()) > 0.7
    # both protocols, named; the 3D one per query and mean, its numbers in range
    assert report["protocol"] == "2d-rendered" and printed["protocol"] == "2d-rendered"
    s3 = report["selection3d"]
    assert s3["protocol"] == printed["selection3d"]["protocol"] == "3d-selection"
    assert s3["gated_by_contribution"]  # reconstruct records the contributions
    assert s3["mean"]["count"] == len(s3["records"]) > 0
    for key in ("iou_alone", "iou_occlusion", "precision"):
        assert 0.0 <= s3["mean_of_queries"][key] <= 1.0
    # a big, unoccluded surface: its selection is found in 3D
    assert s3["per_query"]["floor"]["selected"] > 0 and s3["per_query"]["floor"]["iou_occlusion"] > 0.3


def test_weights_lists_options(capsys):
    assert main(["weights", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(TINY in r["option"] for r in rows)
    assert all("present" in r and "target_path" in r for r in rows)
    assert main(["weights"]) == 0
    assert "weights dir" in capsys.readouterr().out


@pytest.fixture(scope="module")
def plain_scene(tiny_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "scene"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "2", "--backend", "cpu",
                 "--features", "none", "--quiet"]) == 0
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_language_errors_exit_2_with_one_line(lang_scene, plain_scene, synthetic_dataset, tmp_path, capsys):
    assert main(["query", str(lang_scene), "", "--out", str(tmp_path / "q")]) == 2
    assert "empty query" in _one_line_error(capsys)
    assert main(["select", str(lang_scene), "  ", "--out", str(tmp_path / "s.ply")]) == 2
    assert "empty query" in _one_line_error(capsys)
    assert main(["query", str(plain_scene), "floor", "--out", str(tmp_path / "q")]) == 2
    assert "no language field" in _one_line_error(capsys)
    assert not (plain_scene / "features_cache").exists()
    base = ["reconstruct", str(synthetic_dataset), "--iterations", "2", "--backend", "cpu", "--features", "labels",
            "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--clip", "NoSuchNet-99"]) == 2
    assert "unknown CLIP model" in _one_line_error(capsys)
    missing = tmp_path / "missing.safetensors"
    assert main([*base, "--out", str(tmp_path / "b"), "--clip", f"ViT-B-16:{missing}"]) == 2
    assert "not found" in _one_line_error(capsys)


def test_label_annotations_skip_regions_below_min_pixels():
    from langfield.cli_language import label_annotations
    from langfield.types import Label

    sem = np.zeros((10, 10), dtype=np.int32)
    sem[:5] = 1  # 50 px of "table top"
    sem[9, 9] = 2  # a 1 px sliver of "table leg"
    labels = {1: Label("table top", "table"), 2: Label("table leg", "table")}
    assert set(label_annotations(sem, labels)) == {"table top", "table leg", "table"}
    kept = label_annotations(sem, labels, min_pixels=2)
    assert set(kept) == {"table top", "table"}
    assert kept["table"].mask.sum() == 51  # the whole keeps every pixel of its parts


def test_weights_verify_flags_a_corrupt_checkpoint(tmp_path, monkeypatch, capsys):
    from langfield.features import weights as W

    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    spec = W.sam_weight_spec("vit_b")
    assert spec.sha256 and len(spec.sha256) == 64
    target = spec.target_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real checkpoint")
    assert main(["weights", "--verify"]) == 2
    out = capsys.readouterr().out
    assert "SHA256 MISMATCH" in out and "--sam vit_b  [present]" in out
    assert main(["weights"]) == 0  # listing alone reads no file contents


def test_bad_language_option_leaves_no_half_made_scene(synthetic_dataset, lang_scene, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", "3",
                 "--features", "labels", "--clip", "NoSuchModel-42", "--quiet"]) == 2
    assert "unknown CLIP model 'NoSuchModel-42'" in capsys.readouterr().err
    assert not out.exists()  # a corrected rerun must not be refused as "already exists"
    before = sorted(p.relative_to(lang_scene) for p in lang_scene.rglob("*"))
    assert main(["reconstruct", str(synthetic_dataset), "--out", str(lang_scene), "--overwrite", "--iterations", "3",
                 "--features", "labels", "--clip", "NoSuchModel-42", "--quiet"]) == 2
    assert sorted(p.relative_to(lang_scene) for p in lang_scene.rglob("*")) == before  # old scene kept
    assert not (lang_scene.parent / f".{lang_scene.name}.partial").exists()


def test_demo_builds_a_queryable_scene_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iterations", "60", "--width", "64", "--height", "48",
                 "--backend", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "queries:" in printed and "langfield view" in printed
    lang = json.loads((out / "scene" / "config.json").read_text())["language"]
    assert lang["method"] == "labels" and lang["clip"] == TINY and lang["schedule"] == "joint"
    manifest = json.loads((out / "queries" / "manifest.json").read_text())
    assert {e["query"] for e in manifest["entries"]} == {"table", "chair leg"}
    for e in manifest["entries"]:
        assert (out / "queries" / e["overlay"]).is_file() and (out / "queries" / e["relevancy"]).is_file()


def test_default_language_stage_is_skipped_with_one_warning_without_weights(synthetic_dataset, tmp_path, monkeypatch,
                                                                             caplog, capsys):
    from langfield.features import weights as W

    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path / "no-weights"))
    monkeypatch.delenv(W.CLIP_ENV, raising=False)
    out = tmp_path / "scene"
    assert main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", "3", "--backend", "cpu",
                 "--checkpoint-every", "0", "--quiet"]) == 0
    assert caplog.text.count("language stage skipped") == 1 and "not found: download" in caplog.text
    assert "language stage skipped" not in capsys.readouterr().out
    assert "language" not in json.loads((out / "config.json").read_text())
    assert not (out / "features_cache").exists()


def test_lift_replaces_latents_and_records_contributions(lang_scene, tmp_path, capsys):
    import shutil

    from langfield.cli_language import Lift, run_lift
    from langfield.query import LanguageField
    from langfield.scene import load_scene, read_manifest, verify_scene

    scene = tmp_path / "lifted"
    shutil.copytree(lang_scene, scene)
    before = load_scene(scene).params["latents"].clone()
    out = run_lift(Lift(scene=scene, backend="cpu", quiet=True))
    assert out["lift_views"] > 0 and out["lift_seconds"] >= 0
    cfg = json.loads((scene / "config.json").read_text())
    assert cfg["language_config"]["schedule"] == "lift" and cfg["language"]["contribution_file"] == "codec/contribution.pt"
    assert "codec/contribution.pt" in read_manifest(scene) and verify_scene(scene)
    after = load_scene(scene).params["latents"]
    assert after.shape == before.shape and not torch.equal(after, before)
    # the lifted field answers a query in 3D: "floor" selects Gaussians near the floor plane (lowest region)
    field = LanguageField.load(scene, backend="cpu")
    res = field.select("floor")
    assert res.mask.sum() > 0
    # contributions only: the latents stay as they are
    plain = tmp_path / "plain"
    shutil.copytree(lang_scene, plain)
    (plain / "codec" / "contribution.pt").unlink()
    run_lift(Lift(scene=plain, backend="cpu", contribution_only=True))
    assert torch.equal(load_scene(plain).params["latents"], before) and verify_scene(plain)
    assert (plain / "codec" / "contribution.pt").is_file()


def test_reconstruct_lift_schedule_writes_a_lifted_field(synthetic_dataset, tmp_path):
    out = tmp_path / "lift"
    rc = main(["reconstruct", str(synthetic_dataset), "--out", str(out), "--iterations", "40", "--backend", "cpu",
               "--features", "labels", "--clip", TINY, "--language-schedule", "lift", "--codec-steps", "200",
               "--checkpoint-every", "0", "--quiet"])
    assert rc == 0
    lang = json.loads((out / "config.json").read_text())["language"]
    assert lang["schedule"] == "lift" and lang["lift_views"] > 0 and "latent_iterations" not in lang
    assert 0 <= lang["never_seen_share"] < 1 and (out / lang["contribution_file"]).is_file()
