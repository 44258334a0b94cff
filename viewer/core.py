"""The viewer's render core: scene + camera + mode -> an [H, W, 3] uint8 image. No viser here.

One rasterizer pass per frame gives RGB, depth and (for language modes) the
per-level latents; the modes only differ in how those channels become colour.
The query logic is ``langfield.query``'s (level choice, LERF display rule,
heatmap overlay); the core only wires it to a camera.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from langfield.types import LangfieldError
from langfield.viewer.camera import ViewerCamera
from langfield.viewer.colors import PcaBasis, colorize_depth, to_uint8

Mode = Literal["rgb", "depth", "features", "relevancy"]
MODES: tuple[str, ...] = ("rgb", "depth", "features", "relevancy")
LANGUAGE_MODES: tuple[str, ...] = ("features", "relevancy")


@dataclass
class RenderRequest:
    """What to show (everything except the camera)."""

    mode: Mode = "rgb"
    """rgb | depth | features (PCA of the latents) | relevancy (heatmap of ``query`` over RGB)."""
    query: str = ""
    """Text of the relevancy query (relevancy mode shows plain RGB while empty)."""
    negatives: tuple[str, ...] = ()
    """Canonical negative phrases; empty = langfield's defaults."""
    level: Optional[int] = None
    """Feature level (0 = finest); None = per view the level with the highest smoothed maximum
    (relevancy) or all levels concatenated (features)."""


@dataclass
class RenderResult:
    """One rendered frame."""

    image: np.ndarray
    """[H, W, 3] uint8 to display."""
    depth: np.ndarray
    """[H, W] float32 camera depth (0 where nothing was hit)."""
    level: Optional[int] = None
    """Feature level shown (relevancy and features modes), None when all or none."""
    relevancy: Optional[np.ndarray] = None
    """[H, W] float32 raw LERF relevancy of the query at ``level`` (relevancy mode with a query)."""
    note: str = ""
    """Why the requested mode could not be shown as asked (empty when it was)."""


def pick_device(backend: str) -> str:
    """CUDA when the backend allows it and a GPU is present, else CPU."""
    return "cuda" if backend in ("auto", "cuda") and torch.cuda.is_available() else "cpu"


class RenderCore:
    """A loaded scene that renders any camera in any mode; thread-safe (one frame at a time)."""

    def __init__(self, scene_dir: Path, backend: str = "auto", device: Optional[str] = None) -> None:
        from langfield.gaussians.params import activate, sh_degree_of
        from langfield.scene import language_meta_of, load_scene, load_scene_config

        self.root = Path(scene_dir)
        self.backend = backend
        self.device = device or pick_device(backend)
        self.language = None
        self.language_note = ""
        if language_meta_of(load_scene_config(self.root)) is not None:
            from langfield.cli_language import load_language_scene

            try:
                self.language = load_language_scene(self.root, device=self.device)
            except LangfieldError as e:  # a broken language field must not stop the RGB viewer
                self.language_note = f"language field unusable: {e}"
        else:
            self.language_note = ("this scene has no language field: features and relevancy are disabled "
                                  "(reconstruct with --features labels|sam-clip|dense)")
        self.scene = self.language.scene if self.language is not None else load_scene(self.root, device=self.device)
        params = self.scene.params
        self.sh_degree = sh_degree_of(params)
        with torch.no_grad():
            g = activate(params)
            self._g = {k: getattr(g, k).detach() for k in ("means", "quats", "scales", "opacities", "sh")}
        self._latents = params["latents"].detach() if self.language is not None else None
        bg = self.scene.config.get("train", {}).get("background", "black")
        self._background = torch.tensor([1.0, 1.0, 1.0] if bg == "white" else [0.0, 0.0, 0.0], device=self.device)
        self._pca: dict[Optional[int], PcaBasis] = {}
        # One lock for everything touching the scene's tensors, codec and text cache (render threads of
        # several browsers, 3D selection): held by ``render`` and by ``Selector``.
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ scene facts

    @property
    def has_language(self) -> bool:
        return self.language is not None

    @property
    def modes(self) -> tuple[str, ...]:
        """Modes this scene supports."""
        return MODES if self.has_language else tuple(m for m in MODES if m not in LANGUAGE_MODES)

    @property
    def level_names(self) -> list[str]:
        """Names of the feature levels (finest first); empty without language."""
        if self.language is None:
            return []
        return [str(n) for n in self.language.meta.get("levels", range(self.language.num_levels))]

    def initial_camera(self) -> ViewerCamera:
        """The scene's first training camera (any camera if none is marked train)."""
        cams = self.scene.cameras_of("train") or self.scene.cameras
        if not cams:
            raise LangfieldError(f"{self.root}: scene has no cameras to start the viewer from")
        return ViewerCamera.from_scene_camera(cams[0])

    def scene_centre(self) -> np.ndarray:
        """[3] median of the Gaussian means (robust to floaters)."""
        return self._g["means"].median(dim=0).values.cpu().double().numpy()

    def scene_extent(self) -> float:
        """Spread of the Gaussians: distance between their 5th and 95th percentile corners."""
        m = self._g["means"].float().cpu()
        q = torch.quantile(m[:: max(1, len(m) // 50_000)], torch.tensor([0.05, 0.95]), dim=0)
        return float((q[1] - q[0]).norm())

    def up_direction(self) -> np.ndarray:
        """[3] mean up vector of the scene's cameras (the world has no canonical up)."""
        ups = [-np.asarray(c.c2w)[:3, 1] for c in self.scene.cameras]
        up = np.mean(ups, axis=0) if ups else np.array([0.0, 0.0, 1.0])
        return up / max(float(np.linalg.norm(up)), 1e-12)

    # ------------------------------------------------------------------ rendering

    def pca_basis(self, level: Optional[int]) -> PcaBasis:
        """The PCA basis of one level's latents (all levels for None), fitted on first use."""
        if level not in self._pca:
            assert self._latents is not None and self.language is not None
            self._pca[level] = PcaBasis.fit(self._level_slice(self._latents, level), self._g["opacities"])
        return self._pca[level]

    def _level_slice(self, latents: torch.Tensor, level: Optional[int]) -> torch.Tensor:
        if level is None:
            return latents
        d = self.language.latent_dim  # type: ignore[union-attr]
        return latents[..., level * d : (level + 1) * d]

    def check_level(self, level: Optional[int]) -> None:
        """LangfieldError unless ``level`` is None or one of the scene's levels."""
        n = self.language.num_levels if self.language is not None else 0
        if level is not None and not 0 <= level < n:
            raise LangfieldError(f"level {level} out of range: the scene has {n} levels")

    @torch.no_grad()
    def render(self, camera: ViewerCamera, request: RenderRequest) -> RenderResult:
        """Render ``camera`` in ``request.mode``; a language mode on a scene without language shows RGB + note."""
        from langfield.render import render

        if request.mode not in MODES:
            raise LangfieldError(f"unknown viewer mode {request.mode!r} (one of {', '.join(MODES)})")
        language_mode = request.mode in LANGUAGE_MODES
        if language_mode and self.language is not None:
            self.check_level(request.level)
        want_latents = language_mode and self._latents is not None
        if request.mode == "relevancy" and not request.query.strip():
            want_latents = False
        view = camera.to_view(self.device)
        g = self._g
        with self.lock:
            out = render(g["means"], g["quats"], g["scales"], g["opacities"], view.viewmat[None], view.K[None],
                         view.width, view.height, sh_coeffs=g["sh"], backgrounds=self._background[None],
                         render_depth=True, features=self._latents if want_latents else None, backend=self.backend)
            rgb, alpha = out.rgb[0].clamp(0, 1), out.alpha[0, ..., 0]
            depth = out.depth[0, ..., 0] if out.depth is not None else torch.zeros_like(alpha)
            result = RenderResult(image=to_uint8(rgb), depth=depth.float().cpu().numpy())
            if request.mode == "depth":
                result.image = colorize_depth(depth, alpha)
            elif language_mode and self.language is None:
                result.note = self.language_note
            elif request.mode == "features":
                assert out.features is not None
                basis = self.pca_basis(request.level)
                result.image = basis.colorize(self._level_slice(out.features[0], request.level), alpha)
                result.level = request.level
            elif request.mode == "relevancy":
                if out.features is None:
                    result.note = "type a query to see its relevancy"
                else:
                    self._relevancy(out.features[0], rgb, request, result)
        return result

    def _relevancy(self, latents: torch.Tensor, rgb: torch.Tensor, request: RenderRequest, result: RenderResult) -> None:
        """Fill ``result`` with the LERF heatmap of ``request.query`` over ``rgb``."""
        from langfield.cli_language import query_config
        from langfield.query import choose_level, gather_levels, heatmap_overlay, level_relevancy, normalize_relevancy

        ls = self.language
        assert ls is not None
        h, w = latents.shape[:2]
        config = query_config(tuple(request.negatives) or None, request.level, None, h, w)
        lat = latents.reshape(h, w, ls.num_levels, ls.latent_dim).permute(2, 0, 1, 3).contiguous()
        maps = level_relevancy(lat, ls.embed([request.query.strip()]), ls.embed(list(config.negatives)), config,
                               similarity=ls.codec.similarity)
        levels = choose_level(maps, config.smoothing_kernel, config.level)
        rel = gather_levels(maps, levels)[0]
        result.image = heatmap_overlay(rgb, normalize_relevancy(rel, "lerf"))
        result.level = int(levels[0])
        result.relevancy = rel.float().cpu().numpy()
        if not float(rel.max()) > 0.5:
            result.note = "nothing in view beats the negatives"
