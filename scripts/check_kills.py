"""kill -9 at random moments of scene writers, and two writers at once: nothing is ever broken (prints JSON).

1. Kills.  On the tiny synthetic room, for each of ``reconstruct --overwrite``
   (of a finished scene), ``reconstruct --resume --iterations 2x`` (of a
   finished scene) and a language ``reconstruct --resume`` (of a finished
   language scene, new ``--latent-iterations``): run the command once to the
   end (its duration T and its result), then N times on a fresh copy of the
   scene, killed with SIGKILL at a random moment in [0, 1.1 T].  After every
   kill: the scene loads, its PLY is the one from before or the one from after
   (sha256), and a text query answers as before or as after (the language
   scene); then the next writer on the scene (``langfield eval``) runs, and no
   temp file, staging or retired directory of the killed run is left.
2. Concurrency.  A first writer runs (training or evaluating); a second one
   on the same scene, in every combination, is refused with exit 2 and
   "is being written by process PID".

    python scripts/check_kills.py [--n 20] [--workdir DIR] [--seed 0] [--backend auto]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Optional

PY = sys.executable
ITER = 40  # geometry steps of the base scenes (checkpoint every 10)


def langfield(*args: str) -> list[str]:
    return [PY, "-m", "langfield", *args]


def run(cmd: list[str], timeout: float = 1800) -> tuple[int, str, float]:
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stderr, time.time() - t0


def sha(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def in_process(args: list[str]) -> tuple[int, str]:
    """``langfield ARGS`` in this process (no interpreter start-up per check); (exit code, stderr)."""
    from langfield.cli import main

    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as e:  # tyro's own usage errors
            rc = int(e.code or 0)
    return rc, err.getvalue()


def query_fingerprint(scene: Path, work: Path, backend: str) -> Optional[list[float]]:
    """max relevancy of every (camera, query) entry of ``langfield query SCENE table``; None when it fails."""
    out = work / "q"
    shutil.rmtree(out, ignore_errors=True)
    rc, _ = in_process(["query", str(scene), "table", "--out", str(out), "--backend", backend])
    if rc != 0:
        return None
    manifest = json.loads((out / "manifest.json").read_text())
    return [round(float(e["max_relevancy"]), 5) for e in manifest["entries"]]


def leftovers(scene: Path) -> list[str]:
    """What a killed writer may leave: temp files inside, staging/retired directories beside the scene."""
    from langfield.io import is_temp_file
    from langfield.scene_lock import old_path, staging_path

    found = [str(p) for p in scene.rglob("*") if p.is_file() and is_temp_file(p)] if scene.is_dir() else []
    found += [str(p) for p in (staging_path(scene), old_path(scene)) if p.exists()]
    return found


def kill_mode(name: str, base: Path, cmd_of, work: Path, n: int, rng: random.Random, backend: str,
              language: bool) -> dict[str, Any]:
    """Kill ``cmd_of(scene)`` N times on copies of ``base``; see the module docstring."""
    before_ply = sha(base / "point_cloud.ply")
    before_q = query_fingerprint(base, work, backend) if language else None
    ref = work / f"{name}_ref" / "scene"
    shutil.copytree(base, ref)
    rc, err, full_s = run(cmd_of(ref))
    if rc != 0:
        raise SystemExit(f"{name}: the uninterrupted run failed ({rc}): {err[-2000:]}")
    after_ply = sha(ref / "point_cloud.ply")
    after_q = query_fingerprint(ref, work, backend) if language else None
    rows = []
    for i in range(n):
        scene = work / f"{name}_{i}" / "scene"
        shutil.copytree(base, scene)
        delay = rng.uniform(0.0, 1.1 * full_s)
        p = subprocess.Popen(cmd_of(scene), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            killed = True
        left = leftovers(scene)
        rc_info, err_info = in_process(["info", str(scene)])  # loads the scene (finishes a half-done swap)
        ply = sha(scene / "point_cloud.ply")
        state = "before" if ply == before_ply else "after" if ply == after_ply else "broken"
        q = query_fingerprint(scene, work, backend) if language else None
        if language and q not in (before_q, after_q):
            state = "broken"
        if rc_info != 0:
            state = "broken"
        rc_eval, err_eval = in_process(["eval", str(scene), "--backend", backend])  # the next writer
        remaining = leftovers(scene)
        rows.append({"delay_s": round(delay, 2), "killed": killed, "state": state, "leftovers_found": len(left),
                     "leftovers_after_next_run": len(remaining), "next_run_rc": rc_eval,
                     **({"error": (err_info + err_eval).strip()[-300:]} if state == "broken" or rc_eval else {})})
        shutil.rmtree(scene.parent, ignore_errors=True)
        print(f"{name} {i + 1}/{n}: {'killed' if killed else 'finished'} at {delay:.1f} s -> {state}",
              file=sys.stderr, flush=True)  # progress: a run takes minutes
    return {
        "full_run_s": round(full_s, 2),
        "kills": sum(r["killed"] for r in rows),
        "finished_before_kill": sum(not r["killed"] for r in rows),
        "as_before": sum(r["state"] == "before" for r in rows),
        "as_after": sum(r["state"] == "after" for r in rows),
        "broken": sum(r["state"] == "broken" for r in rows),
        "runs_that_left_leftovers": sum(r["leftovers_found"] > 0 for r in rows),
        "leftovers_after_next_run": sum(r["leftovers_after_next_run"] for r in rows),
        "next_run_failed": sum(r["next_run_rc"] != 0 for r in rows),
        "before_differs_from_after": before_ply != after_ply,
        "runs": rows,
    }


def wait_for_lock(scene: Path, pid: int, proc: subprocess.Popen, timeout: float = 600) -> bool:
    """True once process ``pid`` holds the writer lock of ``scene`` (read from the lock file, never probed:
    probing with flock could take the lock from under a writer that is just starting)."""
    from langfield.scene_lock import lock_path

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        try:
            if json.loads(lock_path(scene).read_text() or "{}").get("pid") == pid:
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    return False


def concurrency(data: Path, base_geo: Path, base_lang: Path, work: Path, backend: str) -> list[dict[str, Any]]:
    common = ["--backend", backend, "--quiet"]
    long_geo = ["--iterations", "100000", "--features", "none", *common]

    def fresh(out: Path) -> list[str]:
        return langfield("reconstruct", str(data), "--out", str(out), *long_geo)

    def overwrite(out: Path) -> list[str]:
        return langfield("reconstruct", str(data), "--out", str(out), "--overwrite", *long_geo)

    def resume(out: Path) -> list[str]:
        return langfield("reconstruct", "--out", str(out), str(data), "--resume", "--iterations", "100000", *common)

    def evaluate(out: Path) -> list[str]:
        return langfield("eval", str(out), "--backend", backend)

    def eval_queries(out: Path) -> list[str]:
        return langfield("eval-queries", str(out), "--backend", backend)

    # (first writer, second writer, scene the pair works on)
    combos = [
        ("reconstruct", fresh, "reconstruct", fresh, None),
        ("reconstruct --overwrite", overwrite, "reconstruct --overwrite", overwrite, base_geo),
        ("reconstruct", fresh, "reconstruct --resume", resume, None),
        ("reconstruct", fresh, "reconstruct --overwrite", overwrite, None),
        ("reconstruct --overwrite", overwrite, "reconstruct --resume", resume, base_geo),
        ("reconstruct --resume", resume, "reconstruct --overwrite", overwrite, base_geo),
        ("reconstruct --resume", resume, "reconstruct --resume", resume, base_geo),
        ("reconstruct --overwrite", overwrite, "eval", evaluate, base_geo),
        ("reconstruct --resume", resume, "eval", evaluate, base_geo),
        ("reconstruct --overwrite", overwrite, "eval-queries", eval_queries, base_lang),
    ]
    rows = []
    for i, (name1, first, name2, second, base) in enumerate(combos):
        scene = work / f"pair_{i}" / "scene"
        if base is not None:
            shutil.copytree(base, scene)
        else:
            scene.parent.mkdir(parents=True)
        p = subprocess.Popen(first(scene), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if not wait_for_lock(scene, p.pid, p):
                rows.append({"first": name1, "second": name2, "refused": False,
                             "error": f"first writer never held the lock: {(p.stderr.read() if p.stderr else '')[-300:]}"})
                continue
            rc, err, _ = run(second(scene))
            msg = err.strip().splitlines()[-1] if err.strip() else ""
            rows.append({"first": name1, "second": name2, "rc": rc,
                         "refused": rc == 2 and f"is being written by process {p.pid}" in msg, "message": msg})
        finally:
            p.kill()
            p.wait()
            shutil.rmtree(scene.parent, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="kills per command")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir, removed)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--backend", default="auto", help="rasterizer backend of every command")
    ap.add_argument("--skip-concurrency", action="store_true")
    ap.add_argument("--skip-kills", action="store_true")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="check_kills_"))
    work.mkdir(parents=True, exist_ok=True)
    b = args.backend
    t0 = time.time()
    try:
        data = work / "data"
        if not (data / "transforms.json").is_file():
            subprocess.run([PY, "-m", "langfield.synthetic", str(data), "--width", "64", "--height", "48",
                            "--n-train", "8", "--n-eval", "2"], check=True, capture_output=True)
        geo = ["--iterations", str(ITER), "--checkpoint-every", "10", "--backend", b, "--quiet"]
        lang = ["--features", "labels", "--clip", "test-tiny", "--codec-steps", "100"]
        base_geo, base_lang = work / "base_geo" / "scene", work / "base_lang" / "scene"
        for out, extra in ((base_geo, ["--features", "none"]), (base_lang, [*lang, "--latent-iterations", "100"])):
            if not (out / "point_cloud.ply").is_file():
                rc, err, _ = run(langfield("reconstruct", str(data), "--out", str(out), *geo, *extra))
                if rc != 0:
                    raise SystemExit(f"building {out} failed: {err[-2000:]}")
        result: dict[str, Any] = {"n": args.n, "backend": b, "seed": args.seed}
        if not args.skip_kills:
            rng = random.Random(args.seed)
            modes = {
                "overwrite": (base_geo, lambda s: langfield("reconstruct", str(data), "--out", str(s), "--overwrite",
                                                            *geo, "--seed", "1", "--features", "none"), False),
                "resume": (base_geo, lambda s: langfield("reconstruct", "--out", str(s), str(data), "--resume",
                                                         "--iterations", str(2 * ITER), "--backend", b, "--quiet"),
                           False),
                "language_resume": (base_lang, lambda s: langfield("reconstruct", "--out", str(s), str(data),
                                                                   "--resume", *lang, "--latent-iterations", "150",
                                                                   "--backend", b, "--quiet"), True),
            }
            result["kills"] = {name: kill_mode(name, base, cmd, work, args.n, rng, b, language)
                               for name, (base, cmd, language) in modes.items()}
        if not args.skip_concurrency:
            result["concurrency"] = concurrency(data, base_geo, base_lang, work, b)
        kills = result.get("kills", {}).values()
        result["ok"] = (all(m["broken"] == 0 and m["leftovers_after_next_run"] == 0 and m["next_run_failed"] == 0
                            for m in kills)
                        and all(r["refused"] for r in result.get("concurrency", [])))
        result["wall_s"] = round(time.time() - t0, 1)
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
