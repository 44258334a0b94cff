"""Bad input of ``langfield slam`` through the CLI entry: one clear line naming the problem, exit 2 where fatal.

This module also holds the case table ``CASES`` and the dataset writers that
``scripts/check_slam_inputs.py`` runs as subprocesses (issue 15, Done-means 5); the tests
here run the cases that fail before any frame is tracked (``fast``), and the per-frame skip.

Decision on unreadable frames (corrupt or missing image, a depth image of the wrong size in
the middle of a sequence): the run **warns and skips** the frame, because a single bad file of a
long recording should not cost the user the whole run, and tracking across a one-frame gap is what
constant-velocity prediction plus odometry already does.  More than ``MAX_UNREADABLE_IN_A_ROW``
unusable frames in a row (or none readable at all) is fatal: the data is broken, not hiccuping.
A size mismatch of the *first* frame (every frame, usually) is fatal before anything is written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pytest

FAST_ARGS = ["--no-progress", "--track-downscale", "1", "--map-downscale", "1", "--map-iters", "1",
             "--snapshot-every", "2"]
"""Options of every case's run: a small, quick map (the cases test input handling, not quality)."""


# ----------------------------------------------------------------------------- dataset writers


def write_base(dst: Path, *, frames: int = 8, width: int = 64, height: int = 48, seed: int = 1,
               path_frames: Optional[int] = None) -> Path:
    """A synthetic RGB-D sequence of ``frames`` frames (the first ones of a ``path_frames``-view smooth path)."""
    from langfield.synthetic import generate_scene

    n = path_frames or frames
    if n == frames:
        generate_scene(dst, seed=seed, width=width, height=height, n_train=n, n_eval=0, path="smooth")
        return dst
    full = dst.parent / f".{dst.name}_full"
    generate_scene(full, seed=seed, width=width, height=height, n_train=n, n_eval=0, path="smooth")
    trim_synthetic(full, dst, frames)
    shutil.rmtree(full)
    return dst


def trim_synthetic(src: Path, dst: Path, frames: int, swap_from: Optional[Path] = None,
                   swap: tuple[int, ...] = ()) -> Path:
    """Copy the first ``frames`` frames of synthetic sequence ``src``; frames in ``swap`` take ``swap_from``'s pixels
    (another scene: the camera suddenly sees something else; ``jump`` does the same within one scene)."""
    meta = json.loads((src / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:frames]
    names = [f["file_path"] for f in meta["frames"]]
    meta["train_filenames"], meta["test_filenames"] = names, []
    shutil.copytree(src, dst, ignore=lambda d, files: [f for f in files if f.startswith("frame_")
                                                          and int(f[6:11]) >= frames])
    (dst / "transforms.json").write_text(json.dumps(meta))
    for i in swap:
        for sub in ("images", "depth", "semantics"):
            name = f"frame_{i:05d}.png"
            shutil.copy(swap_from / sub / name, dst / sub / name)  # type: ignore[operator]
    return dst


def jump(src: Path, dst: Path, frames: int, at: tuple[int, ...], ahead: int) -> Path:
    """``src``'s first ``frames`` frames where frames ``at`` show frame ``i + ahead`` (the camera jumps)."""
    trim_synthetic(src, dst, frames)
    for i in at:
        for sub in ("images", "depth", "semantics"):
            shutil.copy(src / sub / f"frame_{i + ahead:05d}.png", dst / sub / f"frame_{i:05d}.png")
    return dst


def _frames(base: Path):
    from langfield.sources.rgbd import open_sequence

    seq = open_sequence(base)
    return seq, list(seq)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def write_plain(base: Path, dst: Path, intrinsics_file: bool = True) -> Path:
    """``base`` as an rgb/ + depth/ (millimetres) folder pair with intrinsics.txt (OpenCV pixel grid)."""
    seq, frames = _frames(base)
    (dst / "rgb").mkdir(parents=True)
    (dst / "depth").mkdir()
    for f in frames:
        cv2.imwrite(str(dst / "rgb" / f"{f.index:04d}.png"), _bgr(f.rgb))
        cv2.imwrite(str(dst / "depth" / f"{f.index:04d}.png"), np.rint(f.depth * 1000).astype(np.uint16))
    if intrinsics_file:
        k = seq.intrinsics
        (dst / "intrinsics.txt").write_text(f"{k.fx} {k.fy} {k.cx - 0.5} {k.cy - 0.5}\n")
    return dst


def write_replica(base: Path, scene: Path, cam_params: bool = True) -> Path:
    """``base`` in NICE-SLAM's Replica layout (``scene/results``, ``traj.txt``, ``scene/cam_params.json``)."""
    seq, frames = _frames(base)
    (scene / "results").mkdir(parents=True)
    rows = []
    for f in frames:
        cv2.imwrite(str(scene / "results" / f"frame{f.index:06d}.jpg"), _bgr(f.rgb), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(scene / "results" / f"depth{f.index:06d}.png"), np.rint(f.depth * 6553.5).astype(np.uint16))
        rows.append(" ".join(repr(float(v)) for v in f.c2w_gt.reshape(-1)))
    (scene / "traj.txt").write_text("\n".join(rows) + "\n")
    if cam_params:
        k = seq.intrinsics
        cam = {"w": k.width, "h": k.height, "fx": k.fx, "fy": k.fy, "cx": k.cx - 0.5, "cy": k.cy - 0.5,
               "scale": 6553.5}
        (scene / "cam_params.json").write_text(json.dumps({"camera": cam}))
    return scene


def write_tum(base: Path, dst: Path) -> tuple[Path, str]:
    """``base`` as a TUM copy (jittered timestamps, 5000 depth units per metre); returns it and its --intrinsics."""
    from langfield.sources.tum import write_tum_copy

    k = write_tum_copy(base, dst, seed=3)
    return dst, ",".join(repr(float(v)) for v in k)


def _shift_lines(path: Path, delta: float, every: int = 1) -> None:
    """Add ``delta`` seconds to every ``every``-th timestamp of a TUM list file."""
    out, n = [], 0
    for ln in path.read_text().splitlines():
        if ln.startswith("#") or not ln.strip():
            out.append(ln)
            continue
        t, name = ln.split()
        out.append(f"{float(t) + (delta if n % every == 0 else 0.0):.6f} {name}")
        n += 1
    path.write_text("\n".join(out) + "\n")


# ----------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One bad input and what ``langfield slam`` must do with it."""

    name: str
    """What the table calls the input."""
    build: Callable[[Path, Path], tuple[Path, list[str]]]
    """(work folder, base synthetic sequence) -> (the sequence path to pass, extra CLI arguments)."""
    expect: str
    """fatal (exit 2 before any output), skip (exit 0, a warning naming the frame), lost / stop (exit 2 after
    tracking loss / too many unreadable frames in a row, the map so far kept), or guard (exit 2, --out is refused
    and the input left untouched)."""
    needles: tuple[str, ...]
    """Substrings the message (the error line; for skip, the warning line) must contain."""
    fast: bool = True
    """Fails before any frame is tracked (cheap enough for the in-process tests)."""


def _plain_case(edit: Callable[[Path], None], intrinsics_file: bool = True, extra: tuple[str, ...] = ()):
    def build(work: Path, base: Path) -> tuple[Path, list[str]]:
        seq = write_plain(base, work / "seq", intrinsics_file)
        edit(seq)
        return seq, list(extra)
    return build


def _replica_case(edit: Callable[[Path], None], cam_params: bool = True):
    def build(work: Path, base: Path) -> tuple[Path, list[str]]:
        scene = write_replica(base, work / "Replica" / "room0", cam_params)
        edit(scene)
        return scene, []
    return build


def _tum_case(edit: Callable[[Path], None], with_intrinsics: bool = True):
    def build(work: Path, base: Path) -> tuple[Path, list[str]]:
        seq, k = write_tum(base, work / "office_seq")
        edit(seq)
        return seq, (["--intrinsics", k] if with_intrinsics else [])
    return build


def _none(_: Path) -> None:
    return None


def _unlink(rel: str) -> Callable[[Path], None]:
    return lambda p: (p / rel).unlink()


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda p: (p / rel).write_bytes(data)


def _truncate(rel: str) -> Callable[[Path], None]:
    def edit(p: Path) -> None:
        raw = (p / rel).read_bytes()
        (p / rel).write_bytes(raw[: len(raw) // 3])
    return edit


def _small_depth(which: Optional[int]) -> Callable[[Path], None]:
    def edit(p: Path) -> None:
        for f in sorted((p / "depth").iterdir()):
            if which is None or f.name == f"{which:04d}.png":
                cv2.imwrite(str(f), np.full((24, 32), 1000, np.uint16))
    return edit


def _traj_lines(keep: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def edit(p: Path) -> None:
        lines = (p / "traj.txt").read_text().splitlines()
        (p / "traj.txt").write_text("\n".join(keep(lines)) + "\n")
    return edit


def _cam_params(text: str) -> Callable[[Path], None]:
    return lambda p: (p / "cam_params.json").write_text(text)


def _synthetic(edit: Callable[[Path], None]):
    def build(work: Path, base: Path) -> tuple[Path, list[str]]:
        seq = work / "syn"
        shutil.copytree(base, seq)
        edit(seq)
        return seq, []
    return build


def _out_is(where: str):
    """--out is the input itself, inside it, or its parent."""
    def build(work: Path, base: Path) -> tuple[Path, list[str]]:
        seq = write_plain(base, work / "data" / "seq")
        out = {"is": seq, "inside": seq / "scene", "contains": seq.parent}[where]
        return seq, ["--out", str(out)]
    return build


def _missing_path(work: Path, base: Path) -> tuple[Path, list[str]]:
    return work / "no_such_sequence", []


def _no_layout(work: Path, base: Path) -> tuple[Path, list[str]]:
    (work / "photos").mkdir()
    shutil.copy(base / "images" / "frame_00000.png", work / "photos" / "a.png")
    return work / "photos", []


def _out_exists(work: Path, base: Path) -> tuple[Path, list[str]]:
    seq = write_plain(base, work / "seq")
    (work / "scene").mkdir()
    (work / "scene" / "notes.txt").write_text("a user's file")
    return seq, ["--out", str(work / "scene")]


CASES: list[Case] = [
    Case("depth/RGB count mismatch (plain: a depth image deleted)", _plain_case(_unlink("depth/0003.png")),
         "fatal", ("8 RGB images in rgb/ but 7 depth images",)),
    Case("depth/RGB count mismatch (Replica: a depth image deleted)",
         _replica_case(_unlink("results/depth000003.png")), "fatal", ("8 colour frames", "7 depth frames")),
    Case("depth/RGB size mismatch (plain: every depth image 32x24)", _plain_case(_small_depth(None)), "fatal",
         ("depth is 32x24", "is 64x48")),
    Case("depth/RGB size mismatch (plain: one depth image mid-sequence)", _plain_case(_small_depth(3)), "skip",
         ("0003.png", "depth is 32x24", "frame 3 of 8", "skipped"), fast=False),
    Case("missing intrinsics (TUM, no freiburg name, no --intrinsics)", _tum_case(_none, with_intrinsics=False),
         "fatal", ("no intrinsics", "freiburg1/2/3", "--intrinsics FX,FY,CX,CY")),
    Case("missing intrinsics (plain folder without intrinsics file)", _plain_case(_none, intrinsics_file=False),
         "fatal", ("no intrinsics", "intrinsics.txt", "--intrinsics")),
    Case("malformed --intrinsics (three numbers)", _plain_case(_none, extra=("--intrinsics", "50,50,32")), "fatal",
         ("--intrinsics", "expected four")),
    Case("malformed --intrinsics (not numbers)", _plain_case(_none, extra=("--intrinsics", "fx,fy,cx,cy")), "fatal",
         ("--intrinsics", "four numbers")),
    Case("malformed --intrinsics (zero focal length)", _plain_case(_none, extra=("--intrinsics", "0,50,32,24")),
         "fatal", ("--intrinsics", "focal lengths must be positive")),
    Case("unreadable frame (plain: corrupt PNG mid-sequence)", _plain_case(_write("rgb/0004.png", b"\x89PNG junk")),
         "skip", ("rgb/0004.png", "corrupt or unreadable RGB image", "frame 4 of 8", "skipped"), fast=False),
    Case("unreadable frame (plain: truncated depth PNG)", _plain_case(_truncate("depth/0002.png")), "skip",
         ("0002.png", "depth", "frame 2 of 8", "skipped"), fast=False),
    Case("unreadable frame (Replica: corrupt JPG mid-sequence)",
         _replica_case(_write("results/frame000005.jpg", b"\xff\xd8\xff junk")), "skip",
         ("frame000005.jpg", "corrupt or unreadable RGB image", "frame 5 of 8", "skipped"), fast=False),
    Case("unreadable frames (plain: RGB of frames 1..6 corrupt)",
         _plain_case(lambda p: [(p / "rgb" / f"{i:04d}.png").write_bytes(b"junk") for i in range(1, 7)]), "stop",
         ("frames 1..6 in a row cannot be read", "0006.png", "corrupt or unreadable RGB image",
          "the map of the 1 frame tracked so far is saved"), fast=False),
    Case("unreadable first frame (plain: corrupt RGB 0000.png)", _plain_case(_write("rgb/0000.png", b"junk")),
         "fatal", ("rgb/0000.png", "corrupt or unreadable image")),
    Case("timestamps that do not associate (TUM depth.txt 1 s later)",
         _tum_case(lambda p: _shift_lines(p / "depth.txt", 1.0)), "fatal",
         ("only 0 of 8 RGB frames associate", "within 0.02 s")),
    Case("timestamps partly associate (TUM: 3 of 8 depth stamps 1 s later)",
         _tum_case(lambda p: _shift_lines(p / "depth.txt", 1.0, every=3)), "skip",
         ("3 of 8 RGB frames have no depth within 0.02 s", "skipped"), fast=False),
    Case("missing traj.txt lines (Replica: last pose deleted)", _replica_case(_traj_lines(lambda ls: ls[:-1])),
         "fatal", ("traj.txt", "7 poses for 8 frames")),
    Case("malformed traj.txt (Replica: a line of 3 numbers)",
         _replica_case(_traj_lines(lambda ls: ls[:2] + ["1 2 3"] + ls[3:])), "fatal",
         ("traj.txt line 3", "expected 16 values, got 3")),
    Case("malformed traj.txt (Replica: a pose that is not rigid)",
         _replica_case(_traj_lines(lambda ls: ls[:1] + [" ".join(["2"] * 16)] + ls[2:])), "fatal",
         ("traj.txt line 2",)),
    Case("missing traj.txt (Replica)", _replica_case(_unlink("traj.txt")), "fatal", ("traj.txt", "not found")),
    Case("cam_params.json missing (Replica)", _replica_case(_none, cam_params=False), "fatal",
         ("no cam_params.json", "--intrinsics")),
    Case("cam_params.json malformed JSON (Replica)", _replica_case(_cam_params('{"camera": {"fx": 50,')), "fatal",
         ("cam_params.json", "malformed JSON at line 1")),
    Case("cam_params.json without camera.fy (Replica)",
         _replica_case(_cam_params('{"camera": {"fx": 50, "cx": 32, "cy": 24}}')), "fatal",
         ("cam_params.json", "camera.fy is missing")),
    Case("output dir is the input", _out_is("is"), "guard", ("is the input", "never writes into its inputs")),
    Case("output dir inside the input", _out_is("inside"), "guard", ("is inside the input",)),
    Case("output dir contains the input", _out_is("contains"), "guard", ("contains the input",)),
    Case("output dir exists (no --overwrite)", _out_exists, "guard", ("already exists", "--overwrite")),
    Case("non-existent path", _missing_path, "fatal", ("no_such_sequence", "no such file or directory")),
    Case("folder of no known layout", _no_layout, "fatal", ("not an RGB-D sequence", "rgb.txt")),
]


def tree_digest(path: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file under ``path``: equal before and after = left untouched."""
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*") if p.is_file())


def message_of(stderr: str, expect: str) -> str:
    """The line a case is judged by: the ``error:`` line, or for ``skip`` the first ``warning:``-like line."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if expect == "skip":
        hits = [ln for ln in lines if "skipped" in ln]
        return hits[0] if hits else (lines[0] if lines else "")
    errors = [ln for ln in lines if ln.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "")


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_base(tmp_path_factory.mktemp("slam_inputs") / "base", frames=8)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from langfield.cli import main

    code = main(["slam", *argv])
    return code, capsys.readouterr().err


def case_argv(case: Case, work: Path, base: Path) -> tuple[Path, Path, list[str]]:
    """Build ``case`` under ``work``: (sequence path, --out path, the arguments after ``langfield slam``)."""
    seq, extra = case.build(work, base)
    out = work / "scene"
    argv = [str(seq), *FAST_ARGS, *extra]
    if "--out" not in extra:
        argv += ["--out", str(out)]
    else:
        out = Path(extra[extra.index("--out") + 1])
    return seq, out, argv


@pytest.mark.parametrize("case", [c for c in CASES if c.fast], ids=lambda c: c.name)
def test_fatal_input_is_one_line_naming_the_problem_and_exit_2(case: Case, base: Path, tmp_path: Path, capsys):
    seq, out, argv = case_argv(case, tmp_path, base)
    existed = out.exists()
    watched = seq.parent if seq.exists() else tmp_path
    before = tree_digest(watched)
    code, err = _cli(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    if case.expect == "guard" or not existed:
        # Nothing was written: the input (and a refused --out) is as it was; a fresh --out was never created.
        after = tree_digest(watched)
        assert after == before
        assert existed or not out.exists()


@pytest.mark.parametrize("case", [c for c in CASES if c.expect == "skip" and "plain" in c.name],
                         ids=lambda c: c.name)
def test_unreadable_frame_mid_sequence_is_skipped_with_a_warning(case: Case, base: Path, tmp_path: Path, capsys):
    from langfield.scene import load_scene
    from langfield.trajectory import read_tum

    seq, out, argv = case_argv(case, tmp_path, base)
    code, err = _cli(argv, capsys)
    assert code == 0, err
    warning = message_of(err, "skip")
    assert warning.startswith("warning: ")
    for needle in case.needles:
        assert needle in warning, (needle, warning)
    ts, _ = read_tum(out / "trajectory_tum.txt")
    assert len(ts) == 7  # every frame but the skipped one
    config = json.loads((out / "config.json").read_text())
    assert len(config["slam"]["skipped_frames"]) == 1 and config["slam"]["skipped_frames"][0]["index"] in (2, 3, 4)
    assert load_scene(out).num_gaussians > 0


def test_too_many_unreadable_frames_in_a_row_stop_the_run_keeping_the_map(base: Path, tmp_path: Path, capsys):
    from langfield.frontend.slam.run import MAX_UNREADABLE_IN_A_ROW
    from langfield.scene import load_scene
    from langfield.trajectory import read_tum

    case = next(c for c in CASES if c.expect == "stop")
    seq, out, argv = case_argv(case, tmp_path, base)
    code, err = _cli(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    # One warning per skipped frame up to the limit, then the error naming the run of bad frames.
    assert len(lines) == MAX_UNREADABLE_IN_A_ROW + 1 == 6
    assert all(ln.startswith("warning: ") and ln.endswith("; skipped") for ln in lines[:-1])
    for needle in case.needles:
        assert needle in lines[-1], (needle, lines[-1])
    ts, _ = read_tum(out / "trajectory_tum.txt")
    assert len(ts) == 1 and load_scene(out).num_gaussians > 0
    config = json.loads((out / "config.json").read_text())
    assert config["slam"]["status"] == "unreadable"
    assert [s["index"] for s in config["slam"]["skipped_frames"]] == [1, 2, 3, 4, 5, 6]


def test_tum_frames_without_depth_are_a_warning_on_the_command_line(base: Path, tmp_path: Path, capsys):
    case = next(c for c in CASES if c.name.startswith("timestamps partly associate"))
    seq, out, argv = case_argv(case, tmp_path, base)
    code, err = _cli(argv + ["--max-frames", "3"], capsys)
    assert code == 0, err
    warning = message_of(err, "skip")
    assert warning.startswith(f"warning: {seq}: ")
    for needle in case.needles:
        assert needle in warning, (needle, warning)
