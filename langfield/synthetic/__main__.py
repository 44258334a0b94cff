"""``python -m langfield.synthetic OUT [--seed S ...]``: write a synthetic scene, print transforms.json's path.

``python -m langfield.synthetic [OUT] --video V.mp4 --frames N [--rotate 90]``: render a smooth camera
path to an MP4 (and, with OUT, the same frames with their true poses as a dataset); prints the video's path.
"""

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
    ap.add_argument(
        "out", type=Path, nargs="?",
        help="output directory (created; a previous synthetic scene there is replaced); with --video: optional, "
        "the video's frames with their true poses",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="layout/colour/camera seed")
    ap.add_argument("--width", type=int, default=320, help="image width in pixels")
    ap.add_argument("--height", type=int, default=240, help="image height in pixels")
    ap.add_argument("--n-train", type=int, default=48, help="number of training views")
    ap.add_argument("--n-eval", type=int, default=8, help="number of held-out views (interleaved on the ring)")
    ap.add_argument("--n-points", type=int, default=SceneConfig.n_points, help="points in points3d.ply")
    ap.add_argument("--no-shadows", action="store_true", help="skip hard shadows")
    ap.add_argument("--no-supersample", action="store_true", help="skip 2x2 edge supersampling")
    ap.add_argument(
        "--path", choices=("ring", "smooth", "static"), default="ring",
        help="camera path: ring (independent views around the room), smooth (a continuous walk, frames in time "
        "order), static (fixed position, tiny rotation); --video always uses smooth unless static is given",
    )  # fmt: skip
    ap.add_argument("--video", type=Path, help="write an MP4 of a smooth camera path here instead of a dataset")
    ap.add_argument("--frames", type=int, default=120, help="with --video: number of video frames")
    ap.add_argument("--fps", type=float, default=30.0, help="with --video: frame rate")
    ap.add_argument(
        "--rotate", type=int, choices=(0, 90, 180, 270), default=0,
        help="with --video: store the frames turned, with this display rotation (clockwise) as metadata; "
        "a portrait phone video is --width < --height --rotate 90",
    )  # fmt: skip
    ap.add_argument(
        "--codec", choices=("mp4v", "png"), default="mp4v",
        help="with --video: mp4v (lossy, like a phone) or png (lossless; give a .mov file name)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.out is None and args.video is None:
        ap.error("give an output directory, or --video OUT.mp4")
    cfg = replace(SceneConfig(), n_points=args.n_points, shadows=not args.no_shadows, supersample=not args.no_supersample)
    try:
        if args.video is not None:
            from .video import render_video

            kind = "static" if args.path == "static" else "orbit"
            print(render_video(
                args.video, seed=args.seed, n_frames=args.frames, width=args.width, height=args.height,
                fps=args.fps, rotate=args.rotate, gt_dir=args.out, kind=kind, config=cfg, codec=args.codec,
            ))  # fmt: skip
            return 0
        path = generate_scene(
            args.out, seed=args.seed, width=args.width, height=args.height,
            n_train=args.n_train, n_eval=args.n_eval, config=cfg, path=args.path,
        )
    except LangfieldError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
