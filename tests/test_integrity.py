"""Scene integrity: the manifest, intact checkpoints, finite parameters, damaged codecs, file modes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.cli import main
from langfield.codec import CodecConfig, LanguageCodec, load_codec, save_codec
from langfield.gaussians.ply import load_ply, save_ply
from langfield.scene import (
    MANIFEST_FILE,
    SceneCamera,
    latest_checkpoint,
    load_scene,
    load_scene_codec,
    read_manifest,
    save_scene,
    verify_scene,
    write_manifest,
)
from langfield.train.checkpoint import load_checkpoint, save_checkpoint
from langfield.types import DataError
from langfield_test_helpers import one_error_line  # registered by tests/conftest.py

DAMAGED = "the file was changed or damaged after the scene was written"


# --------------------------------------------------------------------------- helpers


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte of ``path`` in place (same size), by default in the middle."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x5A
    path.write_bytes(bytes(data))


def flip_tensor_byte(path: Path) -> None:
    """Change one byte inside the largest tensor of a torch.save archive (torch.load alone would not notice)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = path.read_bytes()
    h = info.header_offset
    start = h + 30 + int.from_bytes(raw[h + 26:h + 28], "little") + int.from_bytes(raw[h + 28:h + 30], "little")
    flip_byte(path, start + info.file_size // 2)




@pytest.fixture(scope="module")
def built_scene(tiny_dataset, tmp_path_factory) -> Path:
    """A real (tiny, 3-step) scene from `langfield reconstruct`, plus a codec as a language scene has."""
    out = tmp_path_factory.mktemp("integrity") / "scene"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "3", "--quiet",
                 "--backend", "torch", "--checkpoint-every", "1", "--features", "none"]) == 0
    save_codec(LanguageCodec(CodecConfig(embed_dim=8, latent_dim=2, hidden=(4,))), out / "codec")
    write_manifest(out)
    return out


@pytest.fixture
def scene(built_scene, tmp_path) -> Path:
    """A private copy of the built scene, free to damage."""
    return Path(shutil.copytree(built_scene, tmp_path / "scene"))


# --------------------------------------------------------------------------- manifest


def test_reconstruct_writes_a_manifest_of_the_scene_files(tiny_dataset, tmp_path):
    out = tmp_path / "fresh"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "2", "--quiet",
                 "--backend", "torch", "--features", "none"]) == 0
    files = read_manifest(out)
    assert files is not None
    assert {"config.json", "point_cloud.ply", "cameras.json", "eval/report.json"} <= set(files)
    for rel, entry in files.items():
        data = (out / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}, rel
    assert verify_scene(out) is True


def test_manifest_covers_scene_data_not_caches_checkpoints_or_temp_files(scene):
    (scene / "features_cache" / "k").mkdir(parents=True)
    (scene / "features_cache" / "k" / "f.pt").write_bytes(b"cache")
    (scene / "text_cache").mkdir()
    (scene / "text_cache" / "t.json").write_text("{}")
    (scene / "selections").mkdir()
    (scene / "selections" / "table.ply").write_bytes(b"export")
    (scene / ".point_cloud.ply.abc123.tmp").write_bytes(b"temp of a killed write")
    (scene / "eval" / ".report.json.xyz.tmp").write_bytes(b"temp")
    (scene / ".lock").write_text("1234")
    (scene / "notes.txt").write_text("the user's own file")
    write_manifest(scene)
    listed = set(read_manifest(scene))
    expected = {"config.json", "point_cloud.ply", "cameras.json", "codec/codec.pt", "codec/codec.json",
                "eval/report.json", "eval/contact_sheet.png"}
    assert listed == expected
    # none of the uncovered files matters to verification, whatever happens to them
    shutil.rmtree(scene / "checkpoints")
    (scene / "features_cache" / "k" / "f.pt").write_bytes(b"changed")
    assert verify_scene(scene) is True


@pytest.mark.parametrize("rel", ["point_cloud.ply", "cameras.json", "config.json"])
def test_changed_byte_in_a_scene_file_is_an_error_naming_it(scene, rel, capsys):
    flip_byte(scene / rel)
    message = f"{scene / rel}: sha256 does not match manifest.json ({DAMAGED})"
    with pytest.raises(DataError) as exc:
        load_scene(scene)
    assert str(exc.value) == message
    assert main(["info", str(scene)]) == 2
    assert one_error_line(capsys) == f"error: {message}"


def test_changed_byte_in_the_codec_is_an_error_naming_it(scene):
    # The loaded weights would differ without the check: a flipped byte in tensor data passes torch.load.
    before = torch.load(scene / "codec" / "codec.pt", weights_only=True)
    flip_tensor_byte(scene / "codec" / "codec.pt")
    after = torch.load(scene / "codec" / "codec.pt", weights_only=True)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(DataError) as exc:
        load_scene_codec(scene)
    assert str(exc.value) == f"{scene / 'codec' / 'codec.pt'}: sha256 does not match manifest.json ({DAMAGED})"


def test_truncated_and_missing_files_are_named(scene):
    ply = scene / "point_cloud.ply"
    ply.write_bytes(ply.read_bytes()[:-10])
    with pytest.raises(DataError, match=re.escape(f"{ply}: size") + ".*does not match manifest.json"):
        load_scene(scene)
    (scene / "cameras.json").unlink()
    with pytest.raises(DataError, match=re.escape(f"{scene / 'cameras.json'}: missing, but listed in manifest")):
        verify_scene(scene, files=["cameras.json"])


def test_added_scene_file_and_damaged_manifest_are_reported(scene):
    (scene / "eval" / "extra.json").write_text("{}")
    with pytest.raises(DataError, match="extra.json: not listed in manifest.json"):
        verify_scene(scene)
    load_scene(scene)  # a file the loader does not read does not stop it
    manifest = scene / MANIFEST_FILE
    text = manifest.read_text()
    digest = read_manifest(scene)["point_cloud.ply"]["sha256"]
    manifest.write_text(text.replace(digest, digest[::-1]))  # a damaged manifest, still valid JSON
    with pytest.raises(DataError, match=re.escape(f"{manifest}: damaged scene manifest")):
        load_scene(scene)
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="manifest.json: damaged scene manifest, not valid JSON"):
        load_scene(scene)


def test_scene_without_manifest_still_loads(scene):
    """Scenes written before the manifest existed load unchecked (and stay without one when eval files change)."""
    reference = load_scene(scene)
    (scene / MANIFEST_FILE).unlink()
    assert verify_scene(scene) is False
    old = load_scene(scene)
    assert torch.equal(old.params["means"], reference.params["means"])
    load_scene_codec(scene)
    assert write_manifest(scene, changed=["eval/report.json"]) is None
    assert not (scene / MANIFEST_FILE).exists()


def test_partial_update_keeps_other_entries_as_recorded(scene):
    """Updating eval/ entries must not vouch for damage elsewhere."""
    flip_byte(scene / "point_cloud.ply")
    (scene / "eval" / "report.json").write_text('{"rewritten": true}\n')
    write_manifest(scene, changed=["eval/report.json"])
    verify_scene(scene, files=["eval/report.json"])
    with pytest.raises(DataError, match="point_cloud.ply: sha256 does not match"):
        verify_scene(scene)
    (scene / "eval" / "contact_sheet.png").unlink()
    write_manifest(scene, changed=["eval/contact_sheet.png"])
    assert "eval/contact_sheet.png" not in read_manifest(scene)


def test_eval_command_updates_the_manifest(scene, capsys):
    (scene / "eval" / "report.json").unlink()
    assert main(["eval", str(scene), "--backend", "torch"]) == 0
    capsys.readouterr()
    assert (scene / "eval" / "report.json").is_file()
    assert verify_scene(scene) is True
    flip_byte(scene / "point_cloud.ply")
    assert main(["eval", str(scene), "--backend", "torch"]) == 2
    assert "point_cloud.ply: sha256 does not match manifest.json" in one_error_line(capsys)


def test_save_scene_drops_the_old_manifest_before_rewriting(scene, monkeypatch):
    """A save that dies half-way leaves an unchecked scene, not one that no longer matches its manifest."""
    import langfield.gaussians.ply as ply_mod

    loaded = load_scene(scene)

    def dying_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ply_mod, "save_ply", dying_save)
    with pytest.raises(OSError):
        save_scene(scene, loaded.params, loaded.cameras, loaded.config)
    assert not (scene / MANIFEST_FILE).exists()
    monkeypatch.undo()
    save_scene(scene, loaded.params, loaded.cameras, loaded.config)
    assert verify_scene(scene) is True


def test_manifest_hash_of_a_50mb_ply_is_cheap(tmp_path):
    """The check runs on every load: hashing a 50 MB PLY must stay well under a second."""
    import time

    from langfield.integrity import sha256_file

    path = tmp_path / "big.ply"
    path.write_bytes(os.urandom(50 * 1024 * 1024))
    t0 = time.perf_counter()
    digest = sha256_file(path)
    elapsed = time.perf_counter() - t0
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert elapsed < 2.0, elapsed  # measured ~0.1 s on one core; generous for loaded CI machines


# --------------------------------------------------------------------------- checkpoints


def _payload(step: int) -> dict:
    return {"step": step, "params": {"means": torch.full((50, 3), float(step))}}


def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, _payload(step), step, keep=3)
    newest = tmp_path / "checkpoints" / "ckpt_000003.pt"
    middle = tmp_path / "checkpoints" / "ckpt_000002.pt"
    flip_tensor_byte(newest)
    middle.write_bytes(middle.read_bytes()[:-100])  # truncated
    with caplog.at_level("WARNING"):
        path = latest_checkpoint(tmp_path)
    assert path is not None and path.name == "ckpt_000001.pt"
    assert "ckpt_000003.pt: damaged checkpoint" in caplog.text and "ckpt_000002.pt" in caplog.text
    assert load_checkpoint(path)["step"] == 1
    with pytest.raises(DataError, match=re.escape(f"{newest}: unreadable checkpoint (damaged")):
        load_checkpoint(newest)
    # the resumed run's next checkpoint replaces the damaged later ones
    save_checkpoint(tmp_path, _payload(2), 2, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt_000001.pt", "ckpt_000002.pt"]
    assert latest_checkpoint(tmp_path).name == "ckpt_000002.pt"


def test_no_intact_checkpoint_is_an_error(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, _payload(1), 1)
    (tmp_path / "checkpoints" / "ckpt_000001.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no intact checkpoint to resume from .*ckpt_000001.pt"):
        latest_checkpoint(tmp_path)


def test_checkpoints_order_by_step_beyond_six_digits(tmp_path):
    save_checkpoint(tmp_path, _payload(999_999), 999_999)
    save_checkpoint(tmp_path, _payload(1_000_000), 1_000_000)
    assert latest_checkpoint(tmp_path).name == "ckpt_1000000.pt"


def test_resume_continues_from_the_newest_intact_checkpoint(tiny_dataset, tmp_path, caplog):
    from langfield.train.config import TrainConfig
    from langfield.train.reconstruct import reconstruct

    out = tmp_path / "run"
    cfg = TrainConfig(iterations=6, checkpoint_every=2, backend="torch")
    assert reconstruct(tiny_dataset, out, cfg, stop_after=4, progress=False) is None
    (out / "checkpoints" / "ckpt_000004.pt").write_bytes(b"")  # e.g. a copy that was cut short
    with caplog.at_level("WARNING"):
        result = reconstruct(None, out, resume=True, progress=False)
    assert result is not None and result.report["iterations"] == 6
    assert "ckpt_000004.pt: damaged checkpoint" in caplog.text and "ckpt_000002.pt" in caplog.text
    assert verify_scene(out) is True


# --------------------------------------------------------------------------- finite parameters


def test_non_finite_parameters_are_refused_on_save(make_gaussians, tmp_path):
    params = {k: v.detach().clone() for k, v in make_gaussians(20, seed=0).items()}
    params["opacities"][[2, 5, 7]] = float("nan")
    params["scales"][0, 1] = float("inf")
    path = tmp_path / "bad.ply"
    with pytest.raises(DataError) as exc:
        save_ply(path, params)
    assert str(exc.value) == (f"{path}: refusing to write: 3 NaN/inf values in column 'opacity' "
                              "(and in 1 more column: 'scale_1')")
    assert not path.exists() and not list(tmp_path.iterdir())
    # float32 is what is stored: a finite float64 beyond its range would become inf
    big = {k: v.double() for k, v in make_gaussians(4, seed=0).items()}
    big["means"][1, 0] = 1e300
    with pytest.raises(DataError, match="1 NaN/inf value in column 'x'"):
        save_ply(path, big)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_parameters_are_refused_on_load(make_gaussians, tmp_path, value, capsys, scene):
    good = tmp_path / "good.ply"
    save_ply(good, make_gaussians(20, seed=0))
    from plyfile import PlyData

    ply = PlyData.read(str(good))
    ply["vertex"].data["f_dc_1"][[3, 4]] = value
    bad = tmp_path / "bad.ply"
    ply.write(str(bad))
    with pytest.raises(DataError) as exc:
        load_ply(bad)
    assert str(exc.value).startswith(f"{bad}: 2 NaN/inf values in column 'f_dc_1'")
    # in a scene (written by another tool: no manifest): `info` and `eval` fail with that line, exit 2
    shutil.copy(bad, scene / "point_cloud.ply")
    (scene / MANIFEST_FILE).unlink()
    assert main(["info", str(scene)]) == 2
    assert "2 NaN/inf values in column 'f_dc_1'" in one_error_line(capsys)
    assert main(["eval", str(scene), "--backend", "torch"]) == 2
    assert "2 NaN/inf values in column 'f_dc_1'" in one_error_line(capsys)


@pytest.mark.parametrize("content", [
    b"",
    b"garbage, not a PLY",
    b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nend_header\n\x00",
    b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + b"".join(
        f"property float {n}\n".encode() for n in
        ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
         "rot_0", "rot_1", "rot_2", "rot_3"]) + b"property list uchar float f_rest_0\nend_header\n" + b"\x00" * 57,
])
def test_garbage_scene_ply_is_one_line(scene, content, capsys):
    (scene / "point_cloud.ply").write_bytes(content)
    (scene / MANIFEST_FILE).unlink()
    with pytest.raises(DataError, match=re.escape(str(scene / "point_cloud.ply"))):
        load_scene(scene)
    assert main(["info", str(scene)]) == 2
    one_error_line(capsys)


# --------------------------------------------------------------------------- codec without a manifest


def test_damaged_codec_without_manifest_is_a_data_error(tmp_path):
    d = tmp_path / "codec"
    save_codec(LanguageCodec(CodecConfig(embed_dim=8, latent_dim=2, hidden=(4,))), d)
    flip_tensor_byte(d / "codec.pt")  # the CRC-32 check finds it even with no manifest
    with pytest.raises(DataError, match=re.escape(f"{d / 'codec.pt'}: cannot load codec weights (damaged")):
        load_codec(d)
    codec = LanguageCodec(CodecConfig(embed_dim=8, latent_dim=2, hidden=(4,)))
    with torch.no_grad():
        next(iter(codec.parameters()))[0, 0] = float("nan")
    save_codec(codec, d)
    with pytest.raises(DataError, match="codec.pt: codec weight .* has NaN/inf values"):
        load_codec(d)
    (d / "codec.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="codec.json: invalid codec config"):
        load_codec(d)


# --------------------------------------------------------------------------- permissions


def test_scene_files_follow_the_umask(make_gaussians, tiny_views, tmp_path, monkeypatch):
    import langfield.io as lio

    monkeypatch.setattr(lio, "_UMASK", [])  # langfield.io reads the umask once; make it read ours
    previous = os.umask(0o022)
    try:
        root = tmp_path / "scene"
        cams = [SceneCamera.from_view(v, "train") for v in tiny_views[:2]]
        save_scene(root, make_gaussians(10, seed=0), cams, {"data": str(tmp_path), "finished": True})
        save_codec(LanguageCodec(CodecConfig(embed_dim=8, latent_dim=2, hidden=(4,))), root / "codec")
        save_checkpoint(root, _payload(1), 1)
        write_manifest(root)
    finally:
        os.umask(previous)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.relative_to(root).as_posix() for p in files} >= {
        "config.json", "point_cloud.ply", "cameras.json", "manifest.json", "codec/codec.pt",
        "checkpoints/ckpt_000001.pt"}
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))
    json.loads((root / MANIFEST_FILE).read_text())
    assert np.isfinite(load_scene(root).params["means"].detach().numpy()).all()


def test_resume_of_a_finished_scene_rewrites_the_manifest(scene, tiny_dataset):
    before = read_manifest(scene)
    assert main(["reconstruct", str(tiny_dataset), "--out", str(scene), "--resume", "--iterations", "5", "--quiet",
                 "--backend", "torch", "--features", "none"]) == 0
    after = read_manifest(scene)
    assert after["point_cloud.ply"] != before["point_cloud.ply"]
    assert after["codec/codec.pt"] == before["codec/codec.pt"]  # untouched files keep their entries
    assert verify_scene(scene) is True and load_scene(scene).config["iterations"] == 5
