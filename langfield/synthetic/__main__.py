"""``python -m langfield.synthetic OUT [--seed S ...]``: write a synthetic scene, print transforms.json's path."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

from langfield.types import LangfieldError

from .config import SceneConfig
from .generate import generate_scene


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m langfield.synthetic", description=__doc__)
    ap.add_argument("out", type=Path, help="output directory (created; a previous synthetic scene there is replaced)")
    ap.add_argument("--seed", type=int, default=0, help="layout/colour/camera seed")
    ap.add_argument("--width", type=int, default=320, help="image width in pixels")
    ap.add_argument("--height", type=int, default=240, help="image height in pixels")
    ap.add_argument("--n-train", type=int, default=48, help="number of training views")
    ap.add_argument("--n-eval", type=int, default=8, help="number of held-out views (interleaved on the ring)")
    ap.add_argument("--n-points", type=int, default=SceneConfig.n_points, help="points in points3d.ply")
    ap.add_argument("--no-shadows", action="store_true", help="skip hard shadows")
    ap.add_argument("--no-supersample", action="store_true", help="skip 2x2 edge supersampling")
    args = ap.parse_args(argv)
    cfg = replace(SceneConfig(), n_points=args.n_points, shadows=not args.no_shadows, supersample=not args.no_supersample)
    try:
        path = generate_scene(
            args.out, seed=args.seed, width=args.width, height=args.height,
            n_train=args.n_train, n_eval=args.n_eval, config=cfg,
        )
    except LangfieldError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
