"""Nothing a user gives or has made is lost: inputs are read-only, one writer per scene, metadata never
shrinks, a failed resume leaves the scene as it was, a killed swap is finished by the next command."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langfield.cli import main
from langfield.outputs import check_output
from langfield.scene import latest_checkpoint, load_scene_config
from langfield.scene_lock import (
    SceneBusyError,
    acquire,
    clean_leftovers,
    lock_path,
    old_path,
    recover_interrupted_swap,
    scene_writer,
    staging_path,
)
from langfield.train.checkpoint import load_checkpoint
from langfield.train.config import TrainConfig
from langfield.train.outdir import merged_config, update_config
from langfield.train.trainer import Trainer
from langfield.types import LangfieldError


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cfg(iterations: int) -> TrainConfig:
    from langfield.gaussians.strategy import DefaultStrategy

    return TrainConfig(iterations=iterations, seed=3, sh_degree=1, backend="torch", checkpoint_every=100,
                       strategy=DefaultStrategy(refine_start_iter=1000), scale_strategy_schedule=False)


def _fake_scene(root: Path, **config) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"version": 1, "finished": True, **config}))
    (root / "point_cloud.ply").write_bytes(b"ply " + repr(config).encode())
    return root


# --------------------------------------------------------------------------- inputs are read-only


def test_output_equal_inside_or_containing_an_input_is_refused(tmp_path):
    data = tmp_path / "room"
    (data / "images").mkdir(parents=True)
    for out in (data, data / "images", data / "scene", tmp_path, data / "images" / ".." / "x"):
        with pytest.raises(LangfieldError, match="never writes into its inputs"):
            check_output(out, [data])
    link = tmp_path / "alias"
    link.symlink_to(data)
    with pytest.raises(LangfieldError, match="is the input"):
        check_output(link, [data])  # symlinks resolved: an alias of the input is the input
    check_output(tmp_path / "scene", [data, None])  # a sibling is fine
    cams = tmp_path / "cams.json"
    cams.write_text("{}")
    check_output(tmp_path / "renders", [cams])
    with pytest.raises(LangfieldError, match="contains the input"):
        check_output(tmp_path, [cams])


def test_reconstruct_into_the_dataset_is_refused_and_the_dataset_intact(tiny_dataset, tmp_path, capsys):
    before = _tree(tiny_dataset)
    for out in (tiny_dataset, tiny_dataset / "images", tiny_dataset / "scene", tiny_dataset.parent):
        rc = main(["reconstruct", str(tiny_dataset), "--out", str(out), "--overwrite", "--iterations", "2",
                   "--quiet", "--backend", "torch", "--features", "none"])
        assert rc == 2
        assert "never writes into its inputs" in capsys.readouterr().err
    assert _tree(tiny_dataset) == before
    assert not list(tiny_dataset.parent.glob(f".{tiny_dataset.name}*"))  # no lock, staging or temp left


def test_render_and_query_outputs_may_not_touch_the_scene(tmp_path, capsys):
    scene = _fake_scene(tmp_path / "scene")
    before = _tree(scene)
    assert main(["render", str(scene), "--out", str(scene)]) == 2
    assert main(["render", str(scene), "--out", str(scene / "renders")]) == 2
    assert main(["query", str(scene), "table", "--out", str(scene / "q")]) == 2
    assert main(["select", str(scene), "table", "--out", str(scene / "point_cloud.ply")]) == 2
    assert capsys.readouterr().err.count("never writes into its inputs") == 4
    assert _tree(scene) == before


# --------------------------------------------------------------------------- one writer per scene


def test_second_writer_is_refused_and_release_removes_the_lock_file(tmp_path):
    scene = tmp_path / "scene"
    lock = acquire(scene, "first writer", create_parent=True)
    try:
        with pytest.raises(SceneBusyError, match=rf"is being written by process {os.getpid()} \(started .*first writer"):
            acquire(scene)
        alias = tmp_path / "alias"
        scene.mkdir()
        alias.symlink_to(scene)
        with pytest.raises(SceneBusyError):
            acquire(tmp_path / "." / "alias")  # another spelling of the same scene
    finally:
        lock.release()
    assert not lock_path(scene).exists()
    acquire(scene).release()


_HOLDER = textwrap.dedent("""
    import sys, time
    from langfield.scene_lock import acquire
    lock = acquire(sys.argv[1], "holder test")
    print("locked", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def held_lock():
    """``held_lock(scene)`` -> a child process holding the scene's writer lock (killed -9 at the end)."""
    procs = []

    def hold(scene: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(scene)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path, held_lock):
    scene = tmp_path / "scene"
    scene.mkdir()
    holder = held_lock(scene)
    with pytest.raises(SceneBusyError, match=f"process {holder.pid} "):
        acquire(scene)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock_path(scene).exists()  # kill -9 leaves the file behind ...
    acquire(scene).release()  # ... and it does not block


def test_every_writer_is_refused_while_another_writes(tiny_dataset, tmp_path, held_lock, capsys):
    scene = _fake_scene(tmp_path / "scene", data=str(tiny_dataset))
    (scene / "checkpoints").mkdir()
    (scene / "checkpoints" / "ckpt_000002.pt").write_bytes(b"x")
    fresh = tmp_path / "fresh"
    before = _tree(scene)
    holder = held_lock(scene)
    held_lock(fresh)  # a scene that does not exist yet can be locked too (two fresh runs into one --out)
    common = ["--iterations", "2", "--quiet", "--backend", "torch", "--features", "none"]
    commands = [
        ["reconstruct", str(tiny_dataset), "--out", str(fresh), *common],
        ["reconstruct", str(tiny_dataset), "--out", str(scene), "--overwrite", *common],
        ["reconstruct", str(tiny_dataset), "--out", str(scene), "--resume", *common],
        ["eval", str(scene)],
        ["eval-queries", str(scene)],
    ]
    for args in commands:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "is being written by process" in err and err.startswith("error: "), (args, err)
    assert f"process {holder.pid} (started" in err
    assert _tree(scene) == before and not fresh.exists()


# --------------------------------------------------------------------------- metadata and resume


def test_config_is_merged_never_shrunk(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"version": 1, "language": {"num_levels": 2}, "data": "a"}))
    written = update_config(root, {"data": "b", "finished": False})
    assert written == {"language": {"num_levels": 2}, "data": "b", "finished": False}
    assert json.loads((root / "config.json").read_text()) == written
    assert merged_config({"version": 1, "x": 1}, {"y": 2}) == {"x": 1, "y": 2}


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failed_resume_of_a_finished_scene_leaves_every_file_identical(tiny_dataset, tmp_path, monkeypatch, failure):
    from langfield.train.reconstruct import reconstruct

    out = tmp_path / "scene"
    assert reconstruct(tiny_dataset, out, _cfg(4), progress=False) is not None
    config = json.loads((out / "config.json").read_text())
    config["language"] = {"num_levels": 2, "note": "recorded by an earlier run"}  # must survive any resume
    (out / "config.json").write_text(json.dumps(config))
    before = _tree(out)
    twin = tmp_path / "twin"
    shutil.copytree(out, twin)
    real_step = Trainer.train_step

    def failing(self):
        if self.step == 6:
            raise failure("boom")
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", failing)
    with pytest.raises(failure):
        reconstruct(None, out, resume=True, iterations=8, progress=False)
    assert _tree(out) == before
    assert load_scene_config(out)["language"]["note"] == "recorded by an earlier run"
    assert staging_path(out).is_dir() and not lock_path(out).exists()

    # The next run on the scene cleans the partial one up and continues the finished scene exactly as
    # if the failed run had never been (the same resume on an untouched copy).
    monkeypatch.setattr(Trainer, "train_step", real_step)
    resumed = reconstruct(None, out, resume=True, iterations=8, progress=False)
    assert resumed is not None and resumed.report["iterations"] == 8
    assert not staging_path(out).exists() and not old_path(out).exists()
    assert load_scene_config(out)["language"]["note"] == "recorded by an earlier run"  # merged, not dropped
    assert reconstruct(None, twin, resume=True, iterations=8, progress=False) is not None
    assert (out / "point_cloud.ply").read_bytes() == (twin / "point_cloud.ply").read_bytes()


def test_resume_of_an_unfinished_scene_continues_in_place(tiny_dataset, tmp_path):
    from langfield.train.reconstruct import reconstruct

    out = tmp_path / "scene"
    assert reconstruct(tiny_dataset, out, _cfg(6), progress=False, stop_after=3) is None
    (out / "checkpoints" / ".ckpt_000004.pt.abc123.tmp").write_bytes(b"half")  # what a kill -9 leaves
    assert reconstruct(None, out, resume=True, progress=False) is not None
    assert not staging_path(out).exists()
    assert not list(out.rglob("*.tmp"))
    assert json.loads((out / "config.json").read_text())["finished"] is True


# --------------------------------------------------------------------------- killed swap


def test_swap_killed_between_its_renames_is_finished_by_the_next_command(tmp_path, capsys):
    out = tmp_path / "sw"
    _fake_scene(old_path(out), generation="old")
    _fake_scene(staging_path(out), generation="new")
    load_scene_config(out)  # any reader: finishes the swap instead of "does not exist"
    assert json.loads((out / "config.json").read_text())["generation"] == "new"
    assert not old_path(out).exists() and not staging_path(out).exists()
    assert "finished the swap" in capsys.readouterr().err

    # A staging directory that never finished cannot be the new scene: the old one comes back.
    out.rename(old_path(out))
    partial = _fake_scene(staging_path(out), generation="partial")
    (partial / "config.json").write_text(json.dumps({"finished": False}))
    with scene_writer(out):  # a writer recovers the same way
        pass
    assert json.loads((out / "config.json").read_text())["generation"] == "new"
    assert not staging_path(out).exists() and not old_path(out).exists()


def test_writer_cleans_what_a_killed_run_left(tmp_path):
    scene = _fake_scene(tmp_path / "scene")
    before = _tree(scene)
    leftovers = [scene / ".point_cloud.ply.x1y2.tmp", scene / "eval" / ".contact_sheet.png.k3.tmp"]
    for p in leftovers:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"partial")
    (staging_path(scene) / "checkpoints").mkdir(parents=True)
    _fake_scene(old_path(scene))
    with scene_writer(scene):
        pass
    assert not any(p.exists() for p in leftovers)
    assert not staging_path(scene).exists() and not old_path(scene).exists()
    assert _tree(scene) == before
    assert recover_interrupted_swap(scene) is None and clean_leftovers(scene) == []


def test_overwrite_keeps_the_new_scene_locked_through_the_swap(tiny_dataset, tmp_path, monkeypatch):
    """The lock is on the scene's name, so the swap (new inodes) never opens a gap for a second writer."""
    from langfield.train import outdir
    from langfield.train.reconstruct import reconstruct

    out = tmp_path / "scene"
    assert reconstruct(tiny_dataset, out, _cfg(2), progress=False) is not None
    seen = []
    real_commit = outdir.OutputDir.commit

    def commit(self):
        real_commit(self)
        with pytest.raises(SceneBusyError):
            acquire(out)
        seen.append(True)

    monkeypatch.setattr(outdir.OutputDir, "commit", commit)
    assert reconstruct(tiny_dataset, out, _cfg(3), overwrite=True, progress=False) is not None
    assert seen == [True] and not lock_path(out).exists()
    assert load_checkpoint(latest_checkpoint(out))["step"] == 3
