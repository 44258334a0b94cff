"""Try every kind of bad input on the `langfield` command line and print JSON.

Each case builds a small broken dataset (or scene) in a temp dir, runs the CLI
in a subprocess as a user would, and records the exit code and what stderr
said.  A case passes when the exit code is non-zero, stderr is one line
starting with ``error:`` and there is no traceback.

    python scripts/check_bad_inputs.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def _dataset(root: Path, n: int = 3, w: int = 16, h: int = 12) -> Path:
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
    return cases


def main() -> int:
    results = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, argv in _cases(tmp).items():
            proc = subprocess.run([sys.executable, "-m", "langfield", *argv], capture_output=True, text=True, timeout=300)
            err = proc.stderr.strip().splitlines()
            ok = proc.returncode != 0 and len(err) == 1 and err[0].startswith("error:") and "Traceback" not in proc.stderr
            results.append({"case": name, "exit_code": proc.returncode, "stderr": err[-1] if err else "", "ok": ok})
        kept = (tmp / "out_exists" / "keep.txt").is_file()
    print(json.dumps({"cases": results, "existing_output_kept": kept, "all_ok": all(r["ok"] for r in results) and kept}, indent=1))
    return 0 if all(r["ok"] for r in results) and kept else 1


if __name__ == "__main__":
    sys.exit(main())
