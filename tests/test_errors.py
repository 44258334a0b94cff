"""The CLI's one error path: OSErrors (unwritable output, full disk), parse errors and bad values become ONE
``error: ...`` line naming the path and exit code 2; ``--debug`` keeps the traceback; JSON output has no NaN.

Tests run as root, where a chmod'ed directory is still writable, so an unwritable output is made either as a
path below a regular FILE (a real ENOTDIR/EEXIST from the OS) or by making langfield.io's temp-file creation
fail with EACCES / EROFS for one directory (what a read-only directory does to a non-root user); a full disk
is a write() that fails with ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.cli import _print_json, main
from langfield_test_helpers import one_error_line as _one_error_line  # registered by tests/conftest.py




def _strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture(scope="module")
def scene(tiny_dataset, tmp_path_factory) -> Path:
    """A finished scene over ``tiny_dataset`` built without training (random Gaussians, the dataset's cameras)."""
    from langfield.gaussians.params import create_params
    from langfield.scene import SceneCamera, save_scene
    from langfield.sources import load_dataset, load_split_views

    capture = load_dataset(tiny_dataset)
    train, evals = load_split_views(capture)
    cams = [SceneCamera.from_view(v, "train") for v in train] + [SceneCamera.from_view(v, "eval") for v in evals]
    g = torch.Generator().manual_seed(0)
    n = 200
    params = create_params((torch.rand(n, 3, generator=g) - 0.5) * 1.6, torch.full((n, 3), -3.0),
                           torch.randn(n, 4, generator=g), torch.zeros(n), torch.rand(n, 1, 3, generator=g),
                           torch.zeros(n, 3, 3))
    root = tmp_path_factory.mktemp("errors") / "scene"
    save_scene(root, params, cams, {"data": str(tiny_dataset), "capture_kind": capture.kind, "finished": True,
                                    "iterations": 1, "train": {"background": "black", "downscale": 1,
                                                               "eval_every": 8}})
    return root


def _fail_temp_files_in(monkeypatch, directory: Path, err: int) -> None:
    """langfield.io cannot create files below ``directory`` (EACCES: read-only directory, EROFS: read-only fs)."""
    real = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if dir is not None and Path(dir).resolve().is_relative_to(directory.resolve()):
            raise OSError(err, os.strerror(err), os.path.join(dir, f"{prefix}x1y2z3{suffix}"))
        return real(suffix=suffix, prefix=prefix, dir=dir, text=text)

    monkeypatch.setattr("langfield.io.tempfile.mkstemp", mkstemp)


def _disk_full_below(monkeypatch, directory: Path) -> None:
    """Every write() to a file below ``directory`` fails with ENOSPC, as on a full disk."""
    real = os.fdopen

    class FullDisk:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def fdopen(fd, *args, **kw):
        fh = real(fd, *args, **kw)
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        return FullDisk(fh) if target.is_relative_to(directory.resolve()) else fh

    monkeypatch.setattr("langfield.io.os.fdopen", fdopen)


# --------------------------------------------------------------------------- unwritable outputs


def test_reconstruct_into_a_path_below_a_file(tiny_dataset, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "scene"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "1", "--quiet",
                 "--features", "none"]) == 2
    assert str(blocker) in _one_error_line(capsys)
    assert blocker.read_text() == "not a directory"


def test_render_into_a_path_below_a_file(scene, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["render", str(scene), "--out", str(blocker / "renders"), "--backend", "torch"]) == 2
    assert str(blocker) in _one_error_line(capsys)


@pytest.mark.parametrize("err, reason", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")])
def test_render_into_an_unwritable_directory(scene, tmp_path, monkeypatch, capsys, err, reason):
    out = tmp_path / "renders"
    _fail_temp_files_in(monkeypatch, out, err)
    assert main(["render", str(scene), "--out", str(out), "--backend", "torch"]) == 2
    line = _one_error_line(capsys)
    assert reason in line and str(out) in line
    assert ".tmp" not in line  # the file being written is named, not langfield.io's temp file


def test_eval_of_a_read_only_scene(scene, monkeypatch, capsys):
    _fail_temp_files_in(monkeypatch, scene / "eval", errno.EROFS)
    assert main(["eval", str(scene), "--backend", "torch"]) == 2
    line = _one_error_line(capsys)
    assert "Read-only file system" in line and str(scene / "eval") in line


def test_full_disk_during_reconstruct_names_the_file(tiny_dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scene"
    _disk_full_below(monkeypatch, tmp_path)
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "1", "--quiet",
                 "--features", "none"]) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line and str(tmp_path) in line and ".tmp" not in line


def test_full_disk_during_eval(scene, monkeypatch, capsys):
    _disk_full_below(monkeypatch, scene / "eval")
    assert main(["eval", str(scene), "--backend", "torch"]) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line and str(scene / "eval") in line


def test_debug_keeps_the_traceback(scene, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        main(["render", str(scene), "--out", str(blocker / "r"), "--backend", "torch", "--debug"])


# --------------------------------------------------------------------------- the error line itself


@pytest.mark.parametrize(
    "exc, expected",
    [
        (PermissionError(errno.EACCES, "Permission denied", "/s/eval/.report.json.ab_12.tmp"),
         "error: /s/eval/report.json: Permission denied"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a/.x.ply.q.tmp", None, "/b/x.ply"),
         "error: /a/x.ply -> /b/x.ply: Invalid cross-device link"),
        (OSError(errno.ENOSPC, "No space left on device"), "error: No space left on device (OSError)"),
        (json.JSONDecodeError("Expecting value", "{\n  x", 4), "error: malformed JSON at line 2 column 3"),
    ],
)
def test_errors_reaching_main_become_one_line(exc, expected, monkeypatch, capsys, tmp_path):
    from langfield.cli import Info

    def boom(self):
        raise exc

    monkeypatch.setattr(Info, "run", boom)
    assert main(["info", str(tmp_path)]) == 2
    assert _one_error_line(capsys).startswith(expected)


def test_bad_option_values_are_one_line(tiny_dataset, tmp_path, capsys):
    assert main(["check", str(tiny_dataset), "--downscale", "0"]) == 2
    assert "downscale" in _one_error_line(capsys)
    assert main(["check", str(tiny_dataset), "--eval-every", "-1"]) == 2
    assert "eval_every" in _one_error_line(capsys)


# --------------------------------------------------------------------------- JSON output


def test_printed_json_never_holds_nan(capsys):
    _print_json({"psnr": float("nan"), "bounds": [float("inf"), -float("inf"), 1.5], "n": np.int64(3),
                 "path": Path("/x")})
    out = _strict_json(capsys.readouterr().out)
    assert out == {"psnr": None, "bounds": [None, None, 1.5], "n": 3, "path": "/x"}


def test_info_prints_strict_json(scene, capsys):
    assert main(["info", str(scene)]) == 0
    info = _strict_json(capsys.readouterr().out)
    assert info["num_gaussians"] == 200 and info["cameras"] == {"train": 12, "eval": 4}
