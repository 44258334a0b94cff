"""Benchmark text queries: 2D query latency (text cached / not cached) and 3D selection time; prints JSON.

Usage::

    python scripts/bench_queries.py [--scene SCENE] [--width 320 --height 240] [--repeats 5]

Without ``--scene`` a small synthetic labelled scene is generated and
reconstructed with the tiny offline CLIP (``test-tiny``) in a temp directory.
The query camera is the scene's first eval camera rescaled to WIDTHxHEIGHT.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def _build_scene(root: Path, iterations: int) -> Path:
    from langfield.synthetic import generate_scene
    from langfield.train.config import TrainConfig
    from langfield.train.language import LanguageConfig
    from langfield.train.reconstruct import reconstruct

    data = generate_scene(root / "data", seed=11, width=128, height=96, n_train=16, n_eval=4).parent
    cfg = TrainConfig(iterations=iterations, backend="cpu", sh_degree=1, checkpoint_every=0)
    lang = LanguageConfig(features="labels", clip="test-tiny", codec_steps=500, iterations=300, schedule="sequential")
    reconstruct(data, root / "scene", cfg, progress=False, language=lang)
    return root / "scene"


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scene", type=Path, default=None, help="scene with a language field (default: build one)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--iterations", type=int, default=300, help="geometry steps of the built scene")
    args = ap.parse_args()
    torch.manual_seed(0)

    from langfield.query import LanguageField, QueryConfig, TextEmbeddingCache, query_config

    tmp = None
    scene_dir = args.scene
    if scene_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lf_bench_")
        scene_dir = _build_scene(Path(tmp.name), args.iterations)
    field = LanguageField.load(scene_dir, backend=args.backend)
    cam = (field.cameras_of("eval") or field.cameras)[0]
    sx, sy = args.width / cam.width, args.height / cam.height
    K = np.array(cam.K, dtype=np.float64)
    K[0] *= sx
    K[1] *= sy
    cam = replace(cam, K=K, width=args.width, height=args.height)
    negatives = query_config(args.height, args.width).negatives
    clip_encode = field.text_cache.encoder
    texts = [lab for lab in ("floor", "wall", "table", "chair")]

    def query_2d(cache: TextEmbeddingCache) -> torch.Tensor:
        field.text_cache = cache  # the field embeds through whichever cache the case measures
        return field.relevancy(cam, texts[:1]).masks()

    warm = TextEmbeddingCache(clip_encode, model_name="bench")
    warm(texts + list(negatives))
    query_2d(warm)  # warm-up: model load, allocator, native backend
    t_cached, _ = _timed(lambda: query_2d(warm), args.repeats)
    t_uncached, _ = _timed(lambda: query_2d(TextEmbeddingCache(clip_encode, model_name="bench-cold")), args.repeats)
    t_text, _ = _timed(lambda: clip_encode(texts[:1] + list(negatives)), args.repeats)

    def decode_all():
        field.update(field.params)  # drops the cached decode, so each repeat decodes every Gaussian again
        return field.decode_gaussians()

    t_decode, gr = _timed(decode_all, max(1, args.repeats // 2))
    pos, neg = warm(texts[:1])[0], warm(list(QueryConfig().negatives))
    t_select, res = _timed(lambda: gr.query(pos, neg), args.repeats)  # type: ignore[union-attr]
    print(json.dumps({
        "scene": str(scene_dir),
        "clip": field.clip_name,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "query_resolution": [args.width, args.height],
        "num_levels": field.num_levels,
        "latent_dim": field.latent_dim,
        "query_2d_text_cached_s": round(t_cached, 4),
        "query_2d_text_not_cached_s": round(t_uncached, 4),
        "text_encode_s": round(t_text, 4),
        "num_gaussians": field.num_gaussians,
        "decode_all_gaussians_s": round(t_decode, 4),
        "select_3d_per_query_s": round(t_select, 4),
        "selected": int(res.mask.sum()),  # type: ignore[union-attr]
        "repeats": args.repeats,
    }, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
