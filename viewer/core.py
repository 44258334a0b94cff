"""The viewer's render core: scene + camera + mode -> an [H, W, 3] uint8 image. No viser here.

The scene is a ``langfield.query.LanguageField`` (or, without a language field,
its language-free base ``SceneField``): one rasterizer pass per frame gives RGB,
depth and (for language modes) the per-level latents; the modes only differ in
how those channels become colour. The query logic is ``langfield.query``'s
(level choice, LERF display rule, heatmap overlay); the core only wires it to a camera.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np
import torch

from langfield.types import LangfieldError
from langfield.viewer.camera import ViewerCamera
from langfield.viewer.colors import PcaBasis, RelevancyStyle, colorize_depth, relevancy_overlay, to_uint8
from langfield.viewer.highlight import Highlight, apply_highlight

if TYPE_CHECKING:
    from langfield.query import FieldRelevancy, LanguageField, SceneField
    from langfield.scene import Scene

Mode = Literal["rgb", "depth", "features", "relevancy"]
MODES: tuple[str, ...] = ("rgb", "depth", "features", "relevancy")
LANGUAGE_MODES: tuple[str, ...] = ("features", "relevancy")
DEFAULT_METHOD = "splat-sims"
"""Relevancy method of the viewer (``langfield.query.field.RELEVANCY_METHODS``): per-Gaussian cosines
composited in the RGB pass -- about one RGB frame, and no border outlines (``scripts/bench_viewer.py``)."""
FRAME_CACHE_SIZE = 6
"""Rendered frames kept per core (camera + what was rendered), so a level or mode switch that needs
no new channels re-uses the last pass instead of rendering again."""


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
    method: str = DEFAULT_METHOD
    """How relevancy is computed (``pixel`` = decode every pixel's latents, the old path; ``splat-*``)."""
    style: RelevancyStyle = RelevancyStyle()
    """Colormap and range of the relevancy heatmap."""
    selection: Optional[Highlight] = None
    """Selected Gaussians to draw, composited with depth in the frame's pass (None: no selection / hidden)."""
    selection_only: bool = False
    """With ``selection``: render the selected Gaussians alone (their colours tinted) instead of the scene."""


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
    from langfield.render.backend import default_device

    return str(default_device(backend))


class RenderCore:
    """A loaded scene that renders any camera in any mode; thread-safe (one frame at a time)."""

    def __init__(self, scene_dir: Path, backend: str = "auto", device: Optional[str] = None) -> None:
        from langfield.query import LanguageField, SceneField

        self.root = Path(scene_dir)
        self.backend = backend
        self.device = device or pick_device(backend)
        base = SceneField.load(self.root, device=self.device, backend=backend)
        self.field: SceneField = base
        self.language: Optional[LanguageField] = None
        self.language_note = ""
        if base.language_meta is not None:
            try:
                self.language = LanguageField.from_scene_field(base)
                self.field = self.language
            except LangfieldError as e:  # a broken language field must not stop the RGB viewer
                self.language_note = f"language field unusable: {e}"
        else:
            self.language_note = ("this scene has no language field: features and relevancy are disabled "
                                  "(reconstruct with --features labels|sam-clip|dense)")
        self._pca: dict[Optional[int], PcaBasis] = {}
        self._frames: OrderedDict[tuple, object] = OrderedDict()
        self.passes = 0  # rasterizer passes made (tests check that a level switch makes none)
        self._pca_version = self.field.version
        # One lock for everything touching the scene's tensors, codec and text cache (render threads of
        # several browsers, 3D selection): held by ``render`` and by ``Selector``.
        self.lock = threading.RLock()

    @property
    def scene(self) -> Scene:
        """The loaded scene (its ``params`` are the field's current Gaussians)."""
        return self.field.scene

    @property
    def sh_degree(self) -> int:
        return self.field.sh_degree

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
        return [] if self.language is None else list(self.language.level_names)

    def warm_up(self) -> None:
        """Decode the Gaussians' language features now (a viewer starts this in a thread at launch).

        The first query would otherwise pay for it. It runs without ``lock`` so RGB frames are not held
        up: the decode only reads the Gaussians and the codec, and a relevancy frame racing it at worst
        decodes a second, identical copy.
        """
        if self.language is not None:
            self.language.decode_gaussians()

    def label_names(self) -> list[str]:
        """The texts of the scene's dataset labels (part and whole names), [] when it has none or is gone."""
        from langfield.sources import load_capture

        data = self.scene.settings.data
        if not data:
            return []
        try:
            labels = load_capture(Path(data)).labels or {}
        except (LangfieldError, OSError):  # the dataset moved or was deleted: the viewer does not need it
            return []
        return sorted({t for lab in labels.values() for t in (lab.part, lab.whole)})

    def initial_camera(self) -> ViewerCamera:
        """The scene's first training camera (any camera if none is marked train)."""
        cams = self.scene.cameras_of("train") or self.scene.cameras
        if not cams:
            raise LangfieldError(f"{self.root}: scene has no cameras to start the viewer from")
        return ViewerCamera.from_scene_camera(cams[0])

    def scene_centre(self) -> np.ndarray:
        """[3] median of the Gaussian means (robust to floaters)."""
        return self.field.gaussians.means.median(dim=0).values.cpu().double().numpy()

    def scene_extent(self) -> float:
        """Spread of the Gaussians: distance between their 5th and 95th percentile corners."""
        m = self.field.gaussians.means.float().cpu()
        q = torch.quantile(m[:: max(1, len(m) // 50_000)], torch.tensor([0.05, 0.95]), dim=0)
        return float((q[1] - q[0]).norm())

    def up_direction(self) -> np.ndarray:
        """[3] mean up vector of the scene's cameras (the world has no canonical up)."""
        ups = [-np.asarray(c.c2w)[:3, 1] for c in self.scene.cameras]
        up = np.mean(ups, axis=0) if ups else np.array([0.0, 0.0, 1.0])
        return up / max(float(np.linalg.norm(up)), 1e-12)

    # ------------------------------------------------------------------ rendering

    def pca_basis(self, level: Optional[int]) -> PcaBasis:
        """The PCA basis of one level's latents (all levels for None), fitted on first use per Gaussians."""
        from langfield.codec import split_levels

        ls = self.language
        assert ls is not None
        if self._pca_version != ls.version:  # the field was updated: bases of the old Gaussians are stale
            self._pca, self._pca_version = {}, ls.version
        if level not in self._pca:
            g = ls.gaussians
            assert g.latents is not None
            latents = g.latents if level is None else split_levels(g.latents, ls.latent_dim)[:, level]
            self._pca[level] = PcaBasis.fit(latents, g.opacities)
        return self._pca[level]

    def check_level(self, level: Optional[int]) -> None:
        """LangfieldError unless ``level`` is None or one of the scene's levels."""
        if self.language is not None:
            self.language.check_level(level)
        elif level is not None:
            raise LangfieldError(f"level {level} out of range: the scene has 0 levels")

    @torch.no_grad()
    def render(self, camera: ViewerCamera, request: RenderRequest) -> RenderResult:
        """Render ``camera`` in ``request.mode``; a language mode on a scene without language shows RGB + note.

        A selection (``request.selection``) adds its highlight channels to the same rasterizer pass;
        with ``selection_only`` the pass renders the selected Gaussians alone.
        """
        if request.mode not in MODES:
            raise LangfieldError(f"unknown viewer mode {request.mode!r} (one of {', '.join(MODES)})")
        language_mode = request.mode in LANGUAGE_MODES
        ls = self.language
        if language_mode and ls is not None:
            self.check_level(request.level)
        query = request.query.strip()
        what = ("rgb", "depth", "alpha")
        notes: list[str] = []
        with self.lock:
            hl = request.selection
            if hl is not None and hl.version != self.field.version:
                notes.append("the selection belongs to older Gaussians: select again")
                hl = None
            if hl is not None and hl.count == 0:
                hl = None
            only = hl is not None and request.selection_only
            hl_key = None if hl is None else (hl.key, only)
            hl_channels = None if hl is None else hl.channels(self.device)
            subset = hl.mask if only and hl is not None else None
            # one rasterizer pass per frame: the relevancy call renders rgb/depth/alpha with its channels
            rel = None
            if request.mode == "relevancy" and ls is not None and query and not only:
                # every level's maps come from one pass: a level switch only re-picks (``at_level``)
                key = self._key(camera, "relevancy", query, tuple(request.negatives), request.method, hl_key)
                cached = self._recall(key)
                if cached is None:
                    cached = ls.relevancy(camera, [query], negatives=request.negatives or None, level="auto",
                                          what=what, method=request.method,  # type: ignore[arg-type]
                                          extra=hl_channels)
                    self._remember(key, cached)
                # the cached pass holds the auto choice: only a fixed level is re-picked (the auto pick's box
                # filter is the costliest step after the rasterizer)
                rel = cached if request.level is None else cached.at_level(request.level)  # type: ignore[attr-defined]
                frame = rel.frame
            else:
                want_latents = request.mode == "features" and ls is not None
                key = self._key(camera, "latents" if want_latents else "plain", hl_key)
                frame = self._recall(key)  # type: ignore[assignment]
                if frame is None:
                    frame = self.field.render(camera, what=what + (("latents",) if want_latents else ()),
                                              extra=hl_channels, subset=subset)
                    self._remember(key, frame)
            assert frame.rgb is not None and frame.alpha is not None and frame.depth is not None
            rgb, alpha, depth = frame.rgb, frame.alpha, frame.depth
            result = RenderResult(image=np.zeros((0, 0, 3), np.uint8), depth=depth.float().cpu().numpy())
            image: torch.Tensor | np.ndarray = rgb
            if request.mode == "depth":
                image = colorize_depth(depth, alpha)
            elif language_mode and ls is None:
                notes.append(self.language_note)
            elif request.mode == "features":
                assert ls is not None
                basis = self.pca_basis(request.level)
                image = basis.colorize(frame.level_features(request.level, ls.latent_dim), alpha)
                result.level = request.level
            elif request.mode == "relevancy" and only:
                notes.append("selection only: the selected Gaussians' colours")
            elif request.mode == "relevancy":
                if rel is None:
                    notes.append("type a query to see its relevancy")
                else:
                    image = self._relevancy(rel, rgb, request.style, result, notes)
            if hl is not None:
                assert frame.extra is not None
                base = image if isinstance(image, torch.Tensor) else torch.from_numpy(image).to(rgb.device) / 255.0
                image = apply_highlight(base, frame.extra[..., -hl_channels.shape[1]:])  # type: ignore[union-attr]
            result.image = to_uint8(image) if isinstance(image, torch.Tensor) else image
            result.note = " · ".join(n for n in notes if n)
        return result

    def _key(self, camera: ViewerCamera, *rest: object) -> tuple:
        """Cache key of a pass: the exact camera, what it rendered and the Gaussians' version."""
        return (np.asarray(camera.c2w).tobytes(), np.asarray(camera.K).tobytes(), camera.width, camera.height,
                self.field.version, *rest)

    def _recall(self, key: tuple) -> Optional[object]:
        value = self._frames.get(key)
        if value is not None:
            self._frames.move_to_end(key)
        return value

    def _remember(self, key: tuple, value: object) -> None:
        self.passes += 1
        self._frames[key] = value
        while len(self._frames) > FRAME_CACHE_SIZE:
            self._frames.popitem(last=False)

    @staticmethod
    def _relevancy(rel: "FieldRelevancy", rgb: torch.Tensor, style: RelevancyStyle, result: RenderResult,
                   notes: list[str]) -> np.ndarray:
        """The heatmap of the query over ``rgb`` (``result`` gets the level and raw map)."""
        r = rel.relevancy[0]
        result.level = int(rel.levels[0])
        result.relevancy = r.float().cpu().numpy()
        if not float(result.relevancy.max()) > 0.5:
            notes.append("nothing in view beats the negatives")
        return relevancy_overlay(rgb, r, style)
