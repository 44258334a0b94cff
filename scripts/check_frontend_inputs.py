"""Every bad input of the pose front end, tried on the command line as a user would; prints JSON.

Cases (issue 13): an unreadable video, a zero-length video, a video shorter than the minimum
frames, a static camera (no parallax), photos that do not register (unrelated noise images), photos
of mixed sizes, a folder with no images; and partial registration (a few unrelated photos among
good ones), which must continue with a warning naming the dropped photos.  A failing case passes
when the exit code is 2, stderr's last line is one ``error:`` line, there is no traceback and no
output was written; the partial case passes when it exits 0 and warns.

    python scripts/check_frontend_inputs.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langfield", *argv], capture_output=True, text=True, timeout=1800)


def _noise(folder: Path, n: int, size: tuple[int, int], seed: int, prefix: str = "noise") -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{prefix}_{i:02d}.png")


def _inputs(tmp: Path) -> dict[str, Path]:
    from langfield.synthetic.video import render_video

    cases: dict[str, Path] = {}
    (tmp / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    cases["unreadable video"] = tmp / "corrupt.mp4"
    (tmp / "empty.mp4").write_bytes(b"")
    cases["zero-length video"] = tmp / "empty.mp4"
    render_video(tmp / "short.mp4", seed=1, n_frames=5, width=160, height=120)
    cases["video shorter than the minimum frames"] = tmp / "short.mp4"
    render_video(tmp / "static.mp4", seed=2, n_frames=16, width=320, height=240, kind="static")
    cases["static camera (no parallax)"] = tmp / "static.mp4"
    _noise(tmp / "unrelated", 6, (320, 240), seed=3)
    cases["photos that do not register"] = tmp / "unrelated"
    mixed = tmp / "mixed"
    _noise(mixed, 2, (320, 240), seed=4, prefix="a")
    _noise(mixed, 1, (240, 320), seed=5, prefix="b")
    cases["photos of mixed sizes"] = mixed
    (tmp / "no_images").mkdir()
    (tmp / "no_images" / "notes.txt").write_text("not a photo")
    cases["folder with no images"] = tmp / "no_images"
    return cases


def _partial(tmp: Path) -> Path:
    """16 frames of a smooth synthetic path as photos, plus 3 noise photos of the same size."""
    from langfield.synthetic.video import render_video

    gt = tmp / "partial_gt"
    render_video(tmp / "partial.mp4", seed=4, n_frames=16, width=320, height=240, gt_dir=gt, turns=0.2)
    photos = tmp / "partial"
    shutil.copytree(gt / "images", photos)
    _noise(photos, 3, (320, 240), seed=6, prefix="zz_noise")
    return photos


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    tmp = a.work or Path(tempfile.mkdtemp(prefix="lf_frontend_inputs_"))
    tmp.mkdir(parents=True, exist_ok=True)
    results = []
    for name, path in _inputs(tmp).items():
        for cmd in ("poses", "reconstruct"):
            out = tmp / f"out_{cmd}_{len(results)}"
            p = _run([cmd, str(path), "--out", str(out), "--quiet"])
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            left = sorted(q.name for q in tmp.glob(f".{out.name}*")) + ([out.name] if out.exists() else [])
            ok = (p.returncode == 2 and bool(lines) and lines[-1].startswith("error: ") and len(lines) == 1
                  and "Traceback" not in p.stderr and not left)
            results.append({"case": name, "command": cmd, "exit_code": p.returncode,
                            "stderr": lines[-1] if lines else "", "stderr_lines": len(lines), "left_behind": left,
                            "pass": ok})
    photos = _partial(tmp)
    p = _run(["poses", str(photos), "--out", str(tmp / "out_partial"), "--quiet"])
    warned = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    results.append({"case": "partial registration (3 unrelated of 19 photos)", "command": "poses",
                    "exit_code": p.returncode, "stderr": warned[0] if warned else p.stderr.strip()[-300:],
                    "pass": p.returncode == 0 and bool(warned) and "zz_noise" in warned[0]})
    print(json.dumps({"all_pass": all(r["pass"] for r in results), "cases": results}, indent=2))
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
