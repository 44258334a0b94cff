"""Held-out evaluation of a scene: metrics per view, ``eval/report.json`` and a contact sheet."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from langfield.eval.metrics import psnr, ssim
from langfield.io import atomic_write_json, atomic_write_png
from langfield.scene import EVAL_DIR
from langfield.types import View

REPORT_FILE = "report.json"
CONTACT_SHEET_FILE = "contact_sheet.png"
# Contact sheets of many or large views get unwieldy: cap the tile count and width.
MAX_SHEET_ROWS = 16
MAX_TILE_WIDTH = 480


@torch.no_grad()
def evaluate_views(
    params: torch.nn.ParameterDict,
    views: list[View],
    *,
    sh_degree: int,
    background: str = "black",
    backend: str = "auto",
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Render every view; return per-view metrics and uint8 [H, W*2, 3] render|truth tiles."""
    from langfield.render.views import background_color, render_params

    rows: list[dict[str, Any]] = []
    tiles: list[np.ndarray] = []
    for view in views:
        if view.rgb is None:
            raise ValueError(f"view {view.name} has no image to compare against")
        bg = background_color(background, params["means"].device)
        out = render_params(params, view, sh_degree=sh_degree, background=bg, backend=backend, render_depth=False)
        pred = out.rgb[0].clamp(0, 1)
        gt = view.rgb.to(pred.device)
        p = psnr(pred, gt)
        rows.append({"name": view.name, "psnr": p, "ssim": ssim(pred, gt)})
        tiles.append(_tile(pred, gt))
    return rows, tiles


def write_report(
    eval_dir: Path,
    rows: list[dict[str, Any]],
    tiles: list[np.ndarray],
    *,
    num_gaussians: int,
    iterations: int,
    wall_time_s: Optional[float],
    split: str = "eval",
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Write report.json and contact_sheet.png into ``eval_dir``; return the report."""
    finite = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
    report: dict[str, Any] = {
        "split": split,
        "num_views": len(rows),
        "mean_psnr": float(np.mean(finite)) if finite else None,
        "mean_ssim": float(np.mean([r["ssim"] for r in rows])) if rows else None,
        "num_gaussians": int(num_gaussians),
        "iterations": int(iterations),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
        "views": [{**r, "psnr": r["psnr"] if math.isfinite(r["psnr"]) else None} for r in rows],
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if extra:
        report.update(extra)
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(eval_dir / REPORT_FILE, report)
    if tiles:
        sheet = contact_sheet(tiles[:MAX_SHEET_ROWS], [r["psnr"] for r in rows[:MAX_SHEET_ROWS]])
        atomic_write_png(eval_dir / CONTACT_SHEET_FILE, sheet)
    return report


def evaluate_and_report(
    scene_dir: Path,
    params: torch.nn.ParameterDict,
    views: list[View],
    *,
    sh_degree: int,
    background: str,
    backend: str,
    iterations: int,
    wall_time_s: Optional[float],
    split: str = "eval",
) -> dict[str, Any]:
    """Evaluate ``views`` and write ``scene_dir/eval/``."""
    rows, tiles = evaluate_views(params, views, sh_degree=sh_degree, background=background, backend=backend)
    return write_report(
        Path(scene_dir) / EVAL_DIR, rows, tiles, num_gaussians=int(params["means"].shape[0]),
        iterations=iterations, wall_time_s=wall_time_s, split=split,
    )


# --------------------------------------------------------------------------- images


def _to_u8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def _tile(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    tile = np.concatenate([_to_u8(pred), _to_u8(gt)], axis=1)
    if tile.shape[1] > 2 * MAX_TILE_WIDTH:
        import cv2

        s = 2 * MAX_TILE_WIDTH / tile.shape[1]
        tile = cv2.resize(tile, (2 * MAX_TILE_WIDTH, max(1, int(round(tile.shape[0] * s)))), interpolation=cv2.INTER_AREA)
    return tile


def contact_sheet(tiles: list[np.ndarray], psnrs: list[float]) -> np.ndarray:
    """Stack render|truth tiles vertically, each labelled with its PSNR (top-left, render side)."""
    import cv2

    width = max(t.shape[1] for t in tiles)
    rows = []
    for tile, p in zip(tiles, psnrs):
        row = np.zeros((tile.shape[0] + 2, width, 3), dtype=np.uint8)  # 2 px gap between rows
        row[: tile.shape[0], : tile.shape[1]] = tile
        label = f"{p:.2f} dB" if math.isfinite(p) else "inf dB"
        scale = max(0.3, min(1.0, tile.shape[0] / 300))
        org = (3, int(14 * scale) + 3)
        # dark outline then light text: readable on any background
        cv2.putText(row, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(row, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    return np.concatenate(rows, axis=0)


def evaluate_scene(scene_dir: Path, *, backend: str = "auto", data: Optional[Path] = None) -> dict[str, Any]:
    """Re-evaluate a scene directory on its dataset's held-out views (writes ``scene_dir/eval/``).

    The dataset, split and downscale come from the scene's config.json; the
    dataset must still be where it was (or be passed as ``data``).
    """
    from langfield.gaussians.params import sh_degree_of
    from langfield.scene import load_scene, write_manifest
    from langfield.sources.dataset import load_dataset, load_split_views
    from langfield.types import DataError

    scene = load_scene(scene_dir)
    settings = scene.settings
    cfg = settings.train
    data_path = Path(data) if data is not None else Path(str(settings.data or ""))
    if not str(data_path) or not data_path.exists():
        raise DataError(f"{Path(scene_dir) / 'config.json'}: dataset {data_path} not found (pass --data)")
    capture = load_dataset(data_path, images=cfg.images, eval_every=cfg.eval_every)
    device = scene.params["means"].device
    train, evals = load_split_views(capture, downscale=cfg.downscale, device=device)
    report = evaluate_and_report(
        scene_dir, scene.params, evals or train, sh_degree=sh_degree_of(scene.params), background=cfg.background,
        backend=backend, iterations=int(settings.iterations or 0),
        wall_time_s=settings.wall_time_s, split="eval" if evals else "train",
    )
    # eval/ was rewritten: update its manifest entries (the other entries stay as the scene's writer recorded them)
    write_manifest(scene_dir, changed=[f"{EVAL_DIR}/{REPORT_FILE}", f"{EVAL_DIR}/{CONTACT_SHEET_FILE}"])
    return report
