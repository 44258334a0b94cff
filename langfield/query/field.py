"""``LanguageField``: a scene's language field, loaded once and queried cheaply many times.

In segment-anything's predictor style: :meth:`LanguageField.load` does the
expensive part once (PLY, cameras, codec, the text encoder with the scene's
persistent text cache, the level layout); every later call -- :meth:`render`,
:meth:`embed`, :meth:`relevancy`, :meth:`select`, :meth:`decode_gaussians` --
reuses it. ``langfield query|select|eval-queries``, the viewer and the
benchmarks all go through this class, so nothing else assembles those pieces.
:meth:`update` swaps the Gaussians in place (for a live front end) and drops
everything derived from the old ones.

:class:`SceneField` is the language-free part (Gaussians, cameras, background,
one-pass renders of RGB / depth / alpha); the viewer uses it for scenes
without a language field.

A field is not thread-safe: callers sharing one across threads hold a lock
around every call (the viewer's ``RenderCore.lock``).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Protocol, Sequence, Union

import torch

from langfield.codec import LanguageCodec, split_levels
from langfield.gaussians.params import ActivatedGaussians, activate, sh_degree_of
from langfield.query.masks import relevancy_mask
from langfield.query.query2d import SPLAT_KINDS, composited_relevancy, level_relevancy, pick_levels, splat_channels
from langfield.query.relevancy import DEFAULT_NEGATIVES, QueryConfig, TextEmbeddingCache
from langfield.query.rules import check_texts, query_config
from langfield.query.select3d import GaussianRelevancy, Query3DResult, SelectionConfig
from langfield.render.backend import BACKENDS, Backend
from langfield.render.views import background_color
from langfield.scene import CODEC_DIR, Scene, SceneCamera, language_meta_of, load_scene, load_scene_codec
from langfield.types import DataError, LangfieldError, View

if TYPE_CHECKING:
    from langfield.features.clip_model import ClipModel

TEXT_CACHE_DIR = "text_cache"
"""Sub-directory of a scene holding the persistent text-embedding cache (one file per CLIP option)."""

Channel = Literal["latents", "rgb", "depth", "alpha"]
CHANNELS: tuple[Channel, ...] = ("latents", "rgb", "depth", "alpha")
Level = Union[int, Literal["auto"], None]
"""A feature level (0 = finest), or ``"auto"`` / None for LangSplat's per-query choice."""
RelevancyMethod = Literal["pixel", "splat-sims", "splat-relevancy"]
RELEVANCY_METHODS: tuple[str, ...] = ("pixel", *SPLAT_KINDS)
"""How a view's relevancy is computed. ``pixel``: render the latents and decode every pixel through
the codec (LangSplat's rule; latents blended across a border decode to features of neither side).
``splat-sims``: decode every Gaussian once per scene, per query score each Gaussian against the query
and its negatives (one small matmul), composite those cosines in the RGB pass and take LERF's softmax
per pixel. ``splat-relevancy``: composite each Gaussian's LERF relevancy instead.
(``scripts/bench_viewer.py`` compares them for speed and ``eval-queries`` quality.)"""
SPLAT_CACHE_SIZE = 8
"""Queries whose per-Gaussian channels a field keeps (text + negatives + method)."""


class HasView(Protocol):
    """Anything that becomes a pixel-less ``View``: ``SceneCamera``, the viewer's ``ViewerCamera`` ..."""

    def to_view(self, device: Union[str, torch.device] = "cpu") -> View: ...


Camera = Union[View, HasView, SceneCamera]
"""What every render call accepts: a ``View`` (e.g. the eval code's) or a camera with ``to_view``."""


@dataclass
class FieldRender:
    """One rasterizer pass: the channels asked for, None for the others."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    rgb: Optional[torch.Tensor] = None
    """[H, W, 3] colour in [0, 1], the scene's background composited."""
    depth: Optional[torch.Tensor] = None
    """[H, W] camera depth, 0 where nothing was hit."""
    alpha: Optional[torch.Tensor] = None
    """[H, W] accumulated opacity."""
    features: Optional[torch.Tensor] = None
    """[H, W, L*D] rendered latents, levels side by side as the Gaussians store them."""
    latents: Optional[torch.Tensor] = None
    """[L, H, W, D] the same latents per level (``codec.split_levels``)."""
    extra: Optional[torch.Tensor] = None
    """[H, W, C] per-Gaussian channels composited in the same pass (e.g. query scores), if any were given."""

    def level_features(self, level: Optional[int], latent_dim: int) -> torch.Tensor:
        """[H, W, D] latents of one level, or [H, W, L*D] of all levels for None."""
        if self.features is None:
            raise LangfieldError("this render has no latents (ask for what=('latents', ...))")
        return self.features if level is None else split_levels(self.features, latent_dim)[..., level, :]


@dataclass
class FieldRelevancy:
    """Relevancy of Q texts in one view, with the render it came from."""

    texts: tuple[str, ...]
    """The queried texts, in order."""
    maps: torch.Tensor
    """[L, Q, H, W] raw LERF relevancy at every level."""
    levels: torch.Tensor
    """[Q] int64 level per text (fixed, or the highest box-filtered maximum)."""
    relevancy: torch.Tensor
    """[Q, H, W] raw relevancy at each text's level."""
    config: QueryConfig
    """The query settings used (LangSplat's windows scaled to this render's size)."""
    frame: FieldRender
    """The render the relevancy was computed from (latents or score channels, plus whatever else was asked for)."""
    method: str = "pixel"
    """How the maps were computed (one of ``RELEVANCY_METHODS``)."""

    def masks(self) -> torch.Tensor:
        """[Q, H, W] bool masks by LangSplat's rule (``masks.relevancy_mask``)."""
        return relevancy_mask(self.relevancy, self.config)

    def at_level(self, level: Optional[int]) -> "FieldRelevancy":
        """The same maps with another level (None = auto): no render, no decode (a level switch)."""
        if level is not None and not 0 <= level < self.maps.shape[0]:
            raise LangfieldError(f"level {level} out of range: the scene has {self.maps.shape[0]} levels")
        config = replace(self.config, level=level)
        levels, chosen = pick_levels(self.maps, config)
        return replace(self, levels=levels, relevancy=chosen, config=config)


def _view_of(camera: Camera, device: torch.device) -> View:
    if isinstance(camera, View):
        return camera
    to_view = getattr(camera, "to_view", None)
    if to_view is None:
        raise TypeError(f"expected a View or a camera with to_view(), got {type(camera).__name__}")
    view = to_view(device)
    if not isinstance(view, View):
        raise TypeError(f"{type(camera).__name__}.to_view() returned {type(view).__name__}, not a View")
    return view


def _check_what(what: Sequence[str]) -> frozenset[str]:
    if isinstance(what, str):
        what = (what,)
    unknown = sorted(set(what) - set(CHANNELS))
    if unknown:
        raise LangfieldError(f"unknown render channel(s) {', '.join(unknown)} (one of {', '.join(CHANNELS)})")
    return frozenset(what)


class SceneField:
    """A scene's Gaussians, cameras and background, rendered in one pass per view."""

    root: Path
    """The scene directory."""
    scene: Scene
    """The loaded scene (``scene.params`` are the current Gaussians, pre-activation)."""
    device: torch.device
    """Where the Gaussians (and, for a language field, the codec) live."""
    backend: Backend
    """Rasterizer backend: auto | torch | cpu | cuda."""
    background: torch.Tensor
    """[3] background colour of renders: the one the scene was trained with (random -> black)."""
    sh_degree: int
    """SH degree the stored coefficients support (renders evaluate all of it)."""
    version: int
    """Bumped by every :meth:`update`, so callers can drop what they derived from older Gaussians."""

    def __init__(self, scene: Scene, *, device: Union[str, torch.device] = "cpu", backend: Backend = "auto") -> None:
        if backend not in BACKENDS:
            raise LangfieldError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
        self.root = Path(scene.root)
        self.scene = scene
        self.device = torch.device(device)
        self.backend = backend
        self.background = background_color(scene.settings.train.background, self.device)
        self.version = 0
        self._check_params(scene.params)
        self._set_params(scene.params)

    @classmethod
    def load(cls, scene_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
             backend: Backend = "auto") -> "SceneField":
        """Read SCENE (PLY, cameras, config); DataError naming a missing or broken file."""
        return SceneField(load_scene(Path(scene_dir), device=device), device=device, backend=backend)

    # ------------------------------------------------------------------ state

    @property
    def params(self) -> torch.nn.ParameterDict:
        """The current Gaussians (pre-activation)."""
        return self.scene.params

    @property
    def cameras(self) -> list[SceneCamera]:
        """Train and eval cameras of the scene (each usable as a ``render`` camera)."""
        return self.scene.cameras

    def cameras_of(self, split: str) -> list[SceneCamera]:
        return self.scene.cameras_of(split)

    @property
    def num_gaussians(self) -> int:
        return self.scene.num_gaussians

    @property
    def gaussians(self) -> ActivatedGaussians:
        """The activated, detached Gaussians (computed once per :meth:`update`)."""
        return self._gaussians

    @property
    def language_meta(self) -> Optional[dict[str, object]]:
        """The ``language`` section of config.json, or None when the scene has none."""
        return language_meta_of(self.scene.config)

    @property
    def has_language(self) -> bool:
        return False

    def update(self, params: torch.nn.ParameterDict) -> None:
        """Replace the Gaussians in place (moved to ``device``); caches derived from the old ones are dropped."""
        self._check_params(params)
        self._set_params(params.to(self.device))
        self.version += 1

    def _check_params(self, params: torch.nn.ParameterDict) -> None:
        missing = [k for k in ("means", "quats", "scales", "opacities", "sh0", "shN") if k not in params]
        if missing:
            raise LangfieldError(f"update: parameters lack {', '.join(missing)}")

    def _set_params(self, params: torch.nn.ParameterDict) -> None:
        self.scene.params = params
        self.sh_degree = sh_degree_of(params)
        with torch.no_grad():
            g = activate(params)
            self._gaussians = ActivatedGaussians(
                means=g.means.detach(), quats=g.quats.detach(), scales=g.scales.detach(),
                opacities=g.opacities.detach(), sh=g.sh.detach(),
                latents=None if g.latents is None else g.latents.detach())

    # ------------------------------------------------------------------ rendering

    def _latent_width(self) -> Optional[int]:
        """D of the stored latents for a language field; None here (no latents to render)."""
        return None

    @torch.no_grad()
    def render(self, camera: Camera, what: Sequence[Channel] = ("rgb",),
               extra: Optional[torch.Tensor] = None, subset: Optional[torch.Tensor] = None) -> FieldRender:
        """Render ``what`` (any of latents, rgb, depth, alpha) of one camera in ONE rasterizer pass.

        ``extra`` [N, C]: per-Gaussian channels composited in the same pass (``FieldRender.extra``).
        ``subset`` [N] bool: render only these Gaussians (e.g. the viewer's "selection only").
        """
        from langfield.render import render

        want = _check_what(what)
        d = self._latent_width()
        if "latents" in want and d is None:
            raise LangfieldError(f"{self.root}: scene has no language field, cannot render latents")
        view = _view_of(camera, self.device)
        g = self._gaussians
        n = g.means.shape[0]
        if extra is not None and (extra.ndim != 2 or extra.shape[0] != n):
            raise LangfieldError(f"extra channels must be [N={n}, C], got {tuple(extra.shape)}")
        if subset is not None:
            if subset.shape != (n,) or subset.dtype != torch.bool:
                raise LangfieldError(f"subset must be a [N={n}] bool mask, got {tuple(subset.shape)} {subset.dtype}")
            keep = subset.to(g.means.device)
            g = replace(g, **{k: None if v is None else v[keep] for k, v in vars(g).items()})
            extra = None if extra is None else extra[keep]
            n = g.means.shape[0]
        # Without rgb the colours are constant zeros, so no SH is evaluated (the latents do not depend on it).
        colour = {"sh_coeffs": g.sh} if "rgb" in want else {"colors": g.means.new_zeros(n, 3)}
        stacked = [t for t in (g.latents if "latents" in want else None, extra) if t is not None]
        features = None if not stacked else stacked[0] if len(stacked) == 1 else torch.cat(
            [t.to(torch.float32) for t in stacked], dim=1)
        out = render(g.means, g.quats, g.scales, g.opacities, view.viewmat.to(self.device)[None],
                     view.K.to(self.device)[None], int(view.width), int(view.height), **colour,
                     backgrounds=self.background[None], render_depth="depth" in want,
                     features=features, backend=self.backend)
        frame = FieldRender(width=int(view.width), height=int(view.height))
        if extra is not None:
            assert out.features is not None
            frame.extra = out.features[0, ..., out.features.shape[-1] - extra.shape[1]:]
        if "rgb" in want:
            frame.rgb = out.rgb[0].clamp(0, 1)
        if "alpha" in want:
            frame.alpha = out.alpha[0, ..., 0]
        if "depth" in want:
            assert out.depth is not None
            frame.depth = out.depth[0, ..., 0]
        if "latents" in want:
            assert out.features is not None and d is not None
            frame.features = out.features[0, ..., : g.latents.shape[1]] if extra is not None else out.features[0]
            frame.latents = split_levels(frame.features, d).permute(2, 0, 1, 3).contiguous()  # [L, H, W, D]
        return frame


class _LazyClip:
    """Text encoder of a CLIP option, loaded on first use: a query whose texts are all cached needs no CLIP."""

    def __init__(self, option: str, device: torch.device) -> None:
        self.option, self.device = option, device
        self._model: Optional[ClipModel] = None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self._model is None:
            from langfield.features.clip_model import load_clip

            self._model = load_clip(self.option, device=str(self.device))
        return self._model.encode_text(texts)


def _meta_int(meta: dict[str, object], key: str, root: Path) -> int:
    value = meta.get(key)
    try:
        out = operator.index(value) if not isinstance(value, str) else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{root}/config.json: language.{key} is {value!r}, expected a positive integer") from None
    if out < 1:
        raise DataError(f"{root}/config.json: language.{key} is {out}, expected a positive integer")
    return out


class LanguageField(SceneField):
    """A scene with a language field: codec, level layout and text encoder on top of :class:`SceneField`."""

    meta: dict[str, object]
    """The ``language`` section of config.json (method, clip, levels, codec report ...)."""
    num_levels: int
    """L, the feature levels (finest first)."""
    latent_dim: int
    """D, latent width per level (each Gaussian stores L*D)."""
    level_names: tuple[str, ...]
    """Name of each level (e.g. part, whole), finest first."""
    clip_name: str
    """The CLIP option the field was trained with (texts are embedded with it)."""
    codec: LanguageCodec
    """The scene's codec, in eval mode on ``device``."""
    text_cache: TextEmbeddingCache
    """Text embeddings of ``clip_name``, persisted under SCENE/text_cache (CLIP loaded on first miss)."""

    def __init__(self, scene: Scene, *, device: Union[str, torch.device] = "cpu", backend: Backend = "auto") -> None:
        root = Path(scene.root)
        meta = language_meta_of(scene.config)
        if meta is None or "latents" not in scene.params:
            raise LangfieldError(
                f"{root}: scene has no language field (reconstruct it with --features labels|sam-clip|dense)"
            )
        self.meta = dict(meta)
        self.num_levels = _meta_int(self.meta, "num_levels", root)
        self.latent_dim = _meta_int(self.meta, "latent_dim", root)
        names = self.meta.get("levels")
        self.level_names = tuple(str(x) for x in names) if isinstance(names, (list, tuple)) else tuple(
            str(i) for i in range(self.num_levels))
        if len(self.level_names) != self.num_levels:
            raise DataError(f"{root}/config.json: {len(self.level_names)} level names for {self.num_levels} levels")
        self._decoded: Optional[GaussianRelevancy] = None
        self._splat: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # per-query Gaussian channels
        super().__init__(scene, device=device, backend=backend)  # validates the latent width (_check_params)
        codec, _ = load_scene_codec(root, str(self.meta.get("codec_dir", CODEC_DIR)), device=str(self.device))
        if codec.config.latent_dim != self.latent_dim:
            raise DataError(f"{root}: codec has latent width {codec.config.latent_dim}, config.json says "
                            f"{self.latent_dim}")
        self.codec = codec
        self.clip_name = str(self.meta.get("clip", ""))
        if not self.clip_name:
            raise DataError(f"{root}/config.json: language.clip is missing (which CLIP embeds the query texts?)")
        self.text_cache = TextEmbeddingCache(_LazyClip(self.clip_name, self.device), model_name=self.clip_name,
                                             cache_dir=root / TEXT_CACHE_DIR)

    @classmethod
    def load(cls, scene_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
             backend: Backend = "auto") -> "LanguageField":
        """Read SCENE and its language parts; LangfieldError when it has no language field."""
        return LanguageField(load_scene(Path(scene_dir), device=device), device=device, backend=backend)

    @classmethod
    def from_scene_field(cls, base: SceneField) -> "LanguageField":
        """The language field of an already loaded scene (the PLY is not read again)."""
        return LanguageField(base.scene, device=base.device, backend=base.backend)

    @property
    def has_language(self) -> bool:
        return True

    def _check_params(self, params: torch.nn.ParameterDict) -> None:
        super()._check_params(params)
        want = self.num_levels * self.latent_dim
        got = params["latents"].shape[1] if "latents" in params and params["latents"].ndim == 2 else None
        if got != want:
            what = "no latents" if got is None else f"{got} latent columns"
            raise DataError(f"{self.root}: PLY has {what}, config.json says {want}")

    def _set_params(self, params: torch.nn.ParameterDict) -> None:
        super()._set_params(params)
        self._decoded = None
        self._splat = OrderedDict()

    def _latent_width(self) -> Optional[int]:
        return self.latent_dim

    # ------------------------------------------------------------------ queries

    def check_level(self, level: Level, name: str = "level") -> Optional[int]:
        """``level`` as an index (None for auto); LangfieldError when it is not one of the scene's levels."""
        if level is None or level == "auto":
            return None
        try:
            if isinstance(level, bool):
                raise TypeError
            index = operator.index(level)
        except TypeError:
            raise LangfieldError(f"{name} must be an integer or 'auto', got {level!r}") from None
        if not 0 <= index < self.num_levels:
            raise LangfieldError(f"{name} {index} out of range: the scene has {self.num_levels} levels")
        return index

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """[Q, E] unit CLIP embeddings of ``texts`` (cached in memory and under SCENE/text_cache)."""
        return self.text_cache(texts)

    @torch.no_grad()
    def relevancy(
        self,
        camera: Camera,
        texts: Sequence[str],
        *,
        negatives: Optional[Sequence[str]] = None,
        level: Level = "auto",
        smoothing_kernel: Optional[int] = None,
        what: Sequence[Channel] = (),
        method: RelevancyMethod = "pixel",
        extra: Optional[torch.Tensor] = None,
    ) -> FieldRelevancy:
        """LERF relevancy of ``texts`` in one view: per-level maps -> level choice -> the chosen maps.

        ``negatives`` None: the canonical ones; ``smoothing_kernel`` None: LangSplat's 30 px
        box scaled to the render (``rules.query_config``). ``what`` adds channels to the same
        rasterizer pass (e.g. rgb for an overlay); ``pixel`` always renders the latents, the
        ``splat-*`` methods render the query's per-Gaussian channels (and alpha) instead
        (see ``RELEVANCY_METHODS``). Every level's maps are computed, so ``at_level`` switches for free.
        ``extra`` [N, C]: the caller's per-Gaussian channels, composited in the same pass as the last C
        channels of ``frame.extra`` (the viewer's selection highlight).
        """
        check_texts(texts)
        if method not in RELEVANCY_METHODS:
            raise LangfieldError(f"unknown relevancy method {method!r} (one of {', '.join(RELEVANCY_METHODS)})")
        fixed = self.check_level(level)
        view = _view_of(camera, self.device)
        config = query_config(int(view.height), int(view.width), negatives=negatives, level=fixed,
                              smoothing_kernel=smoothing_kernel)
        # texts and negatives are embedded in separate calls, as they always were (a new text is
        # encoded in the same batch, so its embedding and the cache file do not change)
        pos = self.embed(list(texts))
        neg = self.embed(list(config.negatives))
        if method == "pixel":
            frame = self.render(view, what=("latents", *what), extra=extra)
            assert frame.latents is not None
            maps = level_relevancy(frame.latents, pos, neg, config, similarity=self.codec.similarity)
        else:
            channels = self.splat_channels(tuple(texts), config.negatives, method, config.temperature, pos, neg)
            both = channels if extra is None else torch.cat([channels, extra.to(channels)], dim=1)
            frame = self.render(view, what=("alpha", *what), extra=both)
            assert frame.extra is not None and frame.alpha is not None
            maps = composited_relevancy(frame.extra[..., : channels.shape[1]], frame.alpha, self.num_levels,
                                        len(texts), method, config.temperature)
        levels, chosen = pick_levels(maps, config)
        return FieldRelevancy(texts=tuple(texts), maps=maps, levels=levels, relevancy=chosen, config=config,
                              frame=frame, method=method)

    def splat_channels(self, texts: tuple[str, ...], negatives: tuple[str, ...], method: str, temperature: float,
                       pos: Optional[torch.Tensor] = None, neg: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[N, L*C] per-Gaussian query channels of a ``splat-*`` method (``query2d.splat_channels``), cached.

        The Gaussians are decoded once per :meth:`update` (``decode_gaussians``, shared with 3D
        selection); a query costs one [N, E] x [E, Q + M] matmul per level, then only its render.
        """
        key = (texts, tuple(negatives), method, float(temperature))
        hit = self._splat.get(key)
        if hit is not None:
            self._splat.move_to_end(key)
            return hit
        pos = self.embed(list(texts)) if pos is None else pos
        neg = self.embed(list(negatives)) if neg is None else neg
        decoded = self.decode_gaussians()
        out = splat_channels(decoded.features, pos.to(self.device), neg.to(self.device), method, temperature)
        self._splat[key] = out
        while len(self._splat) > SPLAT_CACHE_SIZE:
            self._splat.popitem(last=False)
        return out

    def decode_gaussians(self) -> GaussianRelevancy:
        """Every Gaussian's latents decoded to CLIP space [L, N, E]; once per :meth:`update`."""
        if self._decoded is None:
            g = self._gaussians
            assert g.latents is not None
            from langfield.query.select3d import load_contribution

            # The recorded contributions belong to the stored Gaussians: a live map (update) has others.
            contribution = load_contribution(self.root, self.meta, device=self.device) if self.version == 0 else None
            if contribution is not None and contribution.shape[0] != g.means.shape[0]:
                contribution = None
            self._decoded = GaussianRelevancy.from_latents(g.latents, self.codec.decode, self.num_levels,
                                                           means=g.means, opacities=g.opacities,
                                                           contribution=contribution)
        return self._decoded

    @torch.no_grad()
    def select(
        self,
        text: str,
        threshold: float = 0.5,
        *,
        negatives: Optional[Sequence[str]] = None,
        level: Level = "auto",
        min_opacity: Optional[float] = None,
    ) -> Query3DResult:
        """Gaussians whose LERF relevancy to ``text`` exceeds ``threshold`` (level: fixed or the best top-k)."""
        text = check_texts([text])[0]
        fixed = self.check_level(level)
        decoded = self.decode_gaussians()
        config = QueryConfig(negatives=tuple(negatives) if negatives else DEFAULT_NEGATIVES, level=fixed)
        return decoded.query(self.embed([text])[0], self.embed(list(config.negatives)), config,
                             SelectionConfig(threshold=threshold, min_opacity=min_opacity))
