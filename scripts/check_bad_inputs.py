"""Try every kind of bad input on the `langfield` command line and print JSON.

Each case builds a small broken dataset (or scene) in a temp dir, runs the CLI
in a subprocess as a user would, and records the exit code and what stderr
said.  A case passes when the exit code is non-zero, stderr is one line
starting with ``error:`` and there is no traceback.

Cases that need a scene train one first (1 step, a few seconds).  The full-disk
and read-only-filesystem cases mount a tiny tmpfs (root only; skipped, and
listed as skipped, elsewhere).

    python scripts/check_bad_inputs.py
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _dataset(root: Path, n: int = 3, w: int = 32, h: int = 24) -> Path:
    """A valid tiny nerfstudio dataset (poses on a small arc)."""
    (root / "images").mkdir(parents=True)
    frames = []
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"images/{i}.png")
        c2w = np.eye(4)
        c2w[:3, 3] = [0.1 * i, 0.0, 2.0]
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": c2w.tolist()})
    meta = {"fl_x": 20.0, "fl_y": 20.0, "cx": w / 2, "cy": h / 2, "w": w, "h": h, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def _edit(root: Path, fn) -> Path:
    meta = json.loads((root / "transforms.json").read_text())
    fn(meta)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def _cases(tmp: Path) -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {}

    def recon(name: str, data: Path, *extra: str) -> None:
        cases[name] = ["reconstruct", str(data), "--out", str(tmp / f"out_{name}"), "--iterations", "5", "--quiet", *extra]

    d = _dataset(tmp / "missing_image")
    (d / "images/1.png").unlink()
    recon("missing image", d)

    d = _dataset(tmp / "corrupt_image")
    (d / "images/1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    recon("corrupt image", d)

    d = _dataset(tmp / "size_mismatch")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(d / "images/2.png")
    recon("image size != intrinsics", d)

    d = _edit(_dataset(tmp / "nan_pose"), lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, float("nan")))
    recon("NaN pose", d)

    def shear(m):
        m["frames"][1]["transform_matrix"][0][1] = 0.7

    recon("non-rigid pose", _edit(_dataset(tmp / "nonrigid"), shear))

    recon("empty frame list", _edit(_dataset(tmp / "empty"), lambda m: m.__setitem__("frames", [])))

    recon("unknown camera model", _edit(_dataset(tmp / "model"), lambda m: m.__setitem__("camera_model", "FISHEYE_624")))

    d = _dataset(tmp / "bad_json")
    (d / "transforms.json").write_text('{"frames": [')
    recon("malformed transforms.json", d)

    d = tmp / "no_poses"
    (d / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(d / "images/a.png")
    recon("image folder without poses", d)

    scene = tmp / "scene_bad_ply"
    scene.mkdir()
    (scene / "config.json").write_text("{}")
    (scene / "point_cloud.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n")
    cases["unreadable PLY"] = ["info", str(scene)]

    d = _dataset(tmp / "exists")
    (tmp / "out_exists").mkdir()
    (tmp / "out_exists" / "keep.txt").write_text("precious")
    cases["output dir exists"] = ["reconstruct", str(d), "--out", str(tmp / "out_exists"), "--iterations", "5", "--quiet"]

    cases["dataset path does not exist"] = ["reconstruct", str(tmp / "nowhere"), "--out", str(tmp / "o"), "--quiet"]

    # Validation with numbers (issue 12): each refused with the value and the frame.
    for name, key, value in (("focal 1e-300", "fl_x", 1e-300), ("focal 1e300", "fl_x", 1e300),
                             ("fl_y 1.5", "fl_y", 1.5), ("k1 = 1e6", "k1", 1e6),
                             ("depth_unit_scale_factor 0", "depth_unit_scale_factor", 0)):
        recon(name, _edit(_dataset(tmp / name.replace(" ", "_")), lambda m, k=key, v=value: m.__setitem__(k, v)))
    recon("--downscale 16", _dataset(tmp / "downscale", w=160, h=120), "--downscale", "16")
    recon("1x1 images", _dataset(tmp / "one_pixel", w=1, h=1))
    d = _dataset(tmp / "bomb")
    _png_header(d / "images/1.png", 15000, 15000)
    recon("15000x15000 PNG (decompression bomb)", d)
    d = _edit(_dataset(tmp / "garbage_points"), lambda m: m.__setitem__("ply_file_path", "points3d.ply"))
    (d / "points3d.ply").write_bytes(b"\x00\x01garbage, not a PLY\xff" * 10)
    recon("garbage points3d.ply", d)
    # The three crashes of the transforms.json fuzzing.
    def split(m, **kw):
        m.update({"train_filenames": ["images/1.png", "images/2.png"], "test_filenames": ["images/0.png"], **kw})
    recon("test_filenames[0] = null", _edit(_dataset(tmp / "split_null"), lambda m: split(m, test_filenames=[None])))
    recon('"train_filenames": -1', _edit(_dataset(tmp / "split_int"), lambda m: split(m, train_filenames=-1)))
    recon('"test_filenames": true', _edit(_dataset(tmp / "split_bool"), lambda m: split(m, test_filenames=True)))
    cases["check: depth_unit_scale_factor 0"] = ["check", str(tmp / "depth_unit_scale_factor_0")]
    cases["check: --downscale 16"] = ["check", str(tmp / "downscale"), "--downscale", "16"]

    blocker = tmp / "a_file"
    blocker.write_text("not a directory")
    cases["reconstruct --out below a regular file"] = ["reconstruct", str(_dataset(tmp / "good")), "--out",
                                                       str(blocker / "scene"), "--iterations", "1", "--quiet"]
    return cases


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG that only claims ``width`` x ``height`` (PIL reads the header; no 675 MB of pixels needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langfield", *argv], capture_output=True, text=True, timeout=600)


def _scene_cases(tmp: Path) -> tuple[dict[str, list[str]], Path]:
    """Cases on a trained scene (render, eval, info with a damaged config)."""
    data = _dataset(tmp / "scene_data", n=4)
    scene = tmp / "scene"
    proc = _run(["reconstruct", str(data), "--out", str(scene), "--iterations", "1", "--quiet", "--features", "none"])
    if proc.returncode != 0:
        raise RuntimeError(f"could not train the scene for the scene cases: {proc.stderr}")
    blocker = tmp / "another_file"
    blocker.write_text("x")
    cases = {"render --out below a regular file": ["render", str(scene), "--out", str(blocker / "r")],
             "render --out in /proc": ["render", str(scene), "--out", "/proc/langfield_out"]}
    garbage = tmp / "scene_train_garbage"
    subprocess.run(["cp", "-a", str(scene), str(garbage)], check=True)
    cfg = json.loads((garbage / "config.json").read_text())
    cfg["train"] = "garbage"
    (garbage / "config.json").write_text(json.dumps(cfg))
    (garbage / "manifest.json").unlink(missing_ok=True)  # so that the config is read, not the manifest refused
    cases['config.json "train": "garbage" (render)'] = ["render", str(garbage), "--out", str(tmp / "r_garbage")]
    cases['config.json "train": "garbage" (eval)'] = ["eval", str(garbage)]
    return cases, scene


def _mounted_cases(tmp: Path, scene: Path) -> tuple[dict[str, list[str]], list[Path], str]:
    """Full disk and read-only filesystem, on real tmpfs mounts (needs root)."""
    full, ro = tmp / "full_disk", tmp / "read_only"
    full.mkdir()
    ro.mkdir()
    mounted: list[Path] = []
    for point, opts in ((full, "size=96k"), (ro, "ro,size=64k")):
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True, text=True)
        if r.returncode != 0:
            for m in mounted:
                subprocess.run(["umount", str(m)], capture_output=True)
            return {}, [], f"cannot mount tmpfs ({r.stderr.strip() or 'not root'})"
        mounted.append(point)
    data = _dataset(tmp / "mount_data", n=4)
    cases = {
        "reconstruct on a full disk": ["reconstruct", str(data), "--out", str(full / "scene"), "--iterations", "1",
                                       "--quiet", "--features", "none"],
        "render on a full disk": ["render", str(scene), "--out", str(full / "renders")],
        "reconstruct on a read-only filesystem": ["reconstruct", str(data), "--out", str(ro / "scene"),
                                                  "--iterations", "1", "--quiet", "--features", "none"],
        "render on a read-only filesystem": ["render", str(scene), "--out", str(ro / "renders")],
    }
    # A full disk that already holds files: fill all but a few KiB so the first large write fails.
    (full / "filler").write_bytes(b"\0" * (80 * 1024))
    return cases, mounted, ""


def main() -> int:
    # A SIGTERM (e.g. from `timeout`) must still run the finally below that unmounts the tmpfs mounts.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        cases = _cases(tmp)
        scene_cases, scene = _scene_cases(tmp)
        cases.update(scene_cases)
        mounted: list[Path] = []
        if os.geteuid() == 0:
            more, mounted, why = _mounted_cases(tmp, scene)
            cases.update(more)
        else:
            why = "not root: cannot mount a tmpfs"
        if why:
            skipped["full disk / read-only filesystem"] = why
        try:
            for name, argv in cases.items():
                proc = _run(argv)
                err = proc.stderr.strip().splitlines()
                ok = (proc.returncode == 2 and len(err) == 1 and err[0].startswith("error:")
                      and "Traceback" not in proc.stderr)
                results.append({"case": name, "exit_code": proc.returncode, "stderr": err[-1] if err else "", "ok": ok})
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress: the cases are slow
        finally:
            for m in mounted:
                subprocess.run(["umount", str(m)], capture_output=True)
        kept = (tmp / "out_exists" / "keep.txt").is_file()
        blocker_kept = (tmp / "a_file").read_text() == "not a directory"
    ok = all(r["ok"] for r in results) and kept and blocker_kept
    print(json.dumps({"cases": results, "existing_output_kept": kept, "file_below_out_kept": blocker_kept,
                      "skipped": skipped, "all_ok": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
