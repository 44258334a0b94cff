"""Every bad input of ``langfield slam`` (issue 15, Done-means 5), tried on the command line as a user would.

Builds each input of the case table in ``tests/frontend/test_slam_inputs.py`` (count and size
mismatches, missing and malformed intrinsics, unreadable frames, TUM timestamps that do not
associate, Replica traj.txt / cam_params.json problems, output paths that overlap the input, a
path that does not exist), plus two tracking losses built here from a smoother sequence: frames
8..11 swapped in from another scene, and frames 8..11 jumping 60 frames ahead in the same one.
Each runs ``python -m langfield slam`` in a subprocess; prints JSON with, per case, the exit code,
the message (the ``error:`` line; the warning for skipped frames), the number of stderr lines and
whether it passed:

* fatal / guard: exit 2, stderr exactly one ``error:`` line naming the problem, no traceback, the
  input's files unchanged and no output created (guard: an existing ``--out`` left as it was);
* skip: exit 0 and a ``warning: ... skipped`` line naming the file and the frame;
* stop / lost: exit 2 with the ``error:`` line last, and the map so far saved as a scene that
  ``load_scene`` opens; for the tracking losses (run with ``--features labels --clip test-tiny``) the
  trajectory ends at the lost frame and ``langfield query`` on the saved scene exits 0.

    python scripts/check_slam_inputs.py [--work DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cases_module():
    cases = ROOT / "tests" / "frontend" / "test_slam_inputs.py"
    spec = importlib.util.spec_from_file_location("slam_input_cases", cases)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is being built
    spec.loader.exec_module(mod)
    return mod


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langfield", *argv], capture_output=True, text=True, timeout=1800)


def _judge(mod, expect: str, needles, p: subprocess.CompletedProcess, out: Path, before, after,
           out_before) -> tuple[bool, str]:
    """(passed, message) of one case's run."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    msg = mod.message_of(p.stderr, expect)
    named = all(n in msg for n in needles)
    clean = "Traceback" not in p.stderr
    if expect in ("fatal", "guard"):
        untouched = before == after and (out_before is None and not out.exists()
                                         or out_before is not None and mod.tree_digest(out) == out_before)
        one_line = len(lines) == 1 and msg.startswith("error: ")
        return p.returncode == 2 and one_line and named and clean and untouched, msg
    if expect == "skip":
        return p.returncode == 0 and msg.startswith("warning: ") and named and clean, msg
    from langfield.scene import load_scene

    try:
        saved = load_scene(out).num_gaussians > 0
    except Exception:  # noqa: BLE001 - any failure to open the saved map fails the case
        saved = False
    return p.returncode == 2 and bool(lines) and lines[-1] == msg and msg.startswith("error: ") and named \
        and clean and saved, msg


def _tracking_loss_cases(mod, work: Path) -> list[dict]:
    """Two sequences whose frames 8..11 jump; tracked with the language field so the saved map can be queried."""
    from langfield.trajectory import read_tum

    smooth = work / "smooth120"
    mod.write_base(smooth, frames=120, width=96, height=72, seed=1)  # ~11 cm, 2.5 degrees per frame
    other = mod.write_base(work / "other", frames=16, width=96, height=72, seed=2)
    swapped = mod.trim_synthetic(smooth, work / "swapped", 16, swap_from=other, swap=(8, 9, 10, 11))
    jumped = mod.jump(smooth, work / "jumped", 16, at=(8, 9, 10, 11), ahead=60)
    meta = json.loads((swapped / "transforms.json").read_text())
    cams = work / "query_cameras.json"
    cams.write_text(json.dumps({**meta, "frames": meta["frames"][:1]}))  # one camera of the tracked part
    labels = json.loads((smooth / "labels.json").read_text())
    text = next(iter(labels.values()))["whole"]
    rows = []
    for name, seq in (("tracking loss (frames 8..11 swapped in from another scene)", swapped),
                      ("tracking loss (frames 8..11 jump 60 frames ahead, same scene)", jumped)):
        out = work / f"out_{seq.name}"
        t0 = time.perf_counter()
        p = _run(["slam", str(seq), "--out", str(out), *mod.FAST_ARGS, "--features", "labels", "--clip", "test-tiny"])
        ok, msg = _judge(mod, "lost", ("tracking lost at frame 8", "frame_00008.png", "frames 0..7 is saved"), p,
                         out, None, None, None)
        traj = len(read_tum(out / "trajectory_tum.txt")[0]) if (out / "trajectory_tum.txt").is_file() else 0
        status = json.loads((out / "config.json").read_text())["slam"]["status"] if (out / "config.json").is_file() \
            else None
        q = _run(["query", str(out), text, "--out", str(work / f"query_{seq.name}"), "--cameras", str(cams)])
        passed = ok and traj == 8 and status == "lost" and q.returncode == 0
        rows.append({"case": name, "expect": "lost", "exit_code": p.returncode, "message": msg,
                     "stderr_lines": len(p.stderr.splitlines()), "trajectory_lines": traj, "snapshot_status": status,
                     "query_exit_code": q.returncode, "query_stderr": q.stderr.strip().splitlines()[-1:],
                     "seconds": round(time.perf_counter() - t0, 1), "pass": passed})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--skip-tracking-loss", action="store_true", help="only the input-reading cases (faster)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="lf_slam_inputs_"))
    work.mkdir(parents=True, exist_ok=True)
    mod = _cases_module()
    base = mod.write_base(work / "base", frames=8)  # the tests' base: 8 frames of 64x48
    results = []
    for n, case in enumerate(mod.CASES):
        case_dir = work / f"case_{n:02d}"
        case_dir.mkdir()
        seq, out, argv = mod.case_argv(case, case_dir, base)
        watched = seq.parent if seq.exists() else case_dir
        before = mod.tree_digest(watched)
        out_before = mod.tree_digest(out) if out.exists() else None
        t0 = time.perf_counter()
        p = _run(["slam", *argv])
        after = mod.tree_digest(watched)
        ok, msg = _judge(mod, case.expect, case.needles, p, out, before, after, out_before)
        results.append({"case": case.name, "expect": case.expect, "exit_code": p.returncode, "message": msg,
                        "stderr_lines": len([ln for ln in p.stderr.splitlines() if ln.strip()]),
                        "seconds": round(time.perf_counter() - t0, 1), "pass": ok})
    if not a.skip_tracking_loss:
        results += _tracking_loss_cases(mod, work)
    print(json.dumps({"all_pass": all(r["pass"] for r in results), "work": str(work), "cases": results}, indent=2))
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
