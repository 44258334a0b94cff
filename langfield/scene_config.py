"""``SCENE/config.json`` read back as typed, versioned values (``SceneConfig.from_dict``).

``reconstruct`` writes config.json (``train/``); everything else reads it through
this module: render (background), info, eval (dataset, split, downscale),
eval-queries and the viewer.  ``scene`` sits below ``train`` in the layering, so
the ``train`` section is a typed view of the fields readers need plus the raw
dict that ``train.config.config_from_dict`` turns back into a ``TrainConfig``.

Versions: the file carries ``"version"`` (``SCENE_FORMAT_VERSION``).  A newer
version than this langfield knows is refused with a ``DataError``; an older one
is upgraded step by step (``_UPGRADES``) before it is read.  A file without a
version is format 0: scenes written before the field existed, and the
provisional config.json a run writes before it finishes; it has the same keys
as format 1.  Missing keys take the defaults the writer used, and a section of
the wrong type is a one-line ``DataError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from langfield.types import DataError

SCENE_FORMAT_VERSION = 1
"""Version of the scene directory format (config.json, cameras.json) this langfield writes."""
LANGUAGE_KEY = "language"
"""config.json section of a scene with a language field (written by the training side)."""
LANGUAGE_CONFIG_KEY = "language_config"
"""config.json section with the LanguageConfig the run used (what --resume continues)."""

BACKGROUNDS = ("black", "white", "random")
"""Values of train.background (TrainConfig's Background literal; a test holds the two equal)."""

_MISSING = object()


def _upgrade_v0(data: dict[str, Any]) -> dict[str, Any]:
    """Format 0 (no "version" key) -> 1: same keys, the version is the only difference."""
    return {**data, "version": 1}


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _upgrade_v0}
"""version v -> function turning a format-v dict into a format-(v+1) one."""


def _fail(source: str, message: str) -> DataError:
    return DataError(f"{source}: {message}")


def _typed(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, source: str) -> Any:
    """``data[key]`` checked against ``kind`` (None allowed when the default is None), else ``default``."""
    value = data.get(key, _MISSING)
    if value is _MISSING or (value is None and default is None):
        return default
    # bool is an int subclass: an int field must not accept true/false, nor a bool field 0/1
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        names = "/".join(k.__name__ for k in _as_tuple(kind))
        raise _fail(source, f"{key!r} must be {names}, got {type(value).__name__} {value!r:.40}")
    return float(value) if kind == (int, float) else value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _section(data: Mapping[str, Any], key: str, source: str) -> Optional[dict[str, Any]]:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(source, f"section {key!r} must be a JSON object, got {type(value).__name__} {value!r:.40}")
    return value


@dataclass(frozen=True)
class TrainSection:
    """Typed view of config.json's ``train`` section (the TrainConfig of the run), fields readers need.

    The defaults are TrainConfig's (a test holds them equal); they apply only to
    files that lack a key.
    """

    iterations: int = 7000
    """Steps the run was configured for."""
    seed: int = 0
    """The run's seed."""
    sh_degree: int = 3
    """Maximum SH degree."""
    background: str = "black"
    """Background composited while training: black | white | random."""
    images: Optional[str] = None
    """Image sub-folder the run read (None = the reader's choice)."""
    eval_every: int = 8
    """Every N-th frame held out when the dataset has no split."""
    downscale: int = 1
    """Integer downscale of the images the run trained on."""
    backend: str = "auto"
    """Rasterizer backend of the run."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The whole section, for ``train.config.config_from_dict``."""

    @staticmethod
    def from_dict(data: Optional[Mapping[str, Any]], source: str = "config.json") -> "TrainSection":
        data = data or {}
        d = TrainSection()
        section = TrainSection(
            iterations=_typed(data, "iterations", int, d.iterations, source),
            seed=_typed(data, "seed", int, d.seed, source),
            sh_degree=_typed(data, "sh_degree", int, d.sh_degree, source),
            background=_typed(data, "background", str, d.background, source),
            images=_typed(data, "images", str, d.images, source),
            eval_every=_typed(data, "eval_every", int, d.eval_every, source),
            downscale=_typed(data, "downscale", int, d.downscale, source),
            backend=_typed(data, "backend", str, d.backend, source),
            raw=dict(data),
        )
        for name, low in (("iterations", 1), ("eval_every", 0), ("downscale", 1)):
            if getattr(section, name) < low:
                raise _fail(source, f"train.{name} must be an integer >= {low}, got {getattr(section, name)}")
        if not 0 <= section.sh_degree <= 3:
            raise _fail(source, f"train.sh_degree must be in 0..3, got {section.sh_degree}")
        if section.background not in BACKGROUNDS:
            raise _fail(source, f"train.background must be {', '.join(BACKGROUNDS)}, got {section.background!r}")
        return section


@dataclass(frozen=True)
class SceneConfig:
    """A scene's config.json, typed.  Build it with ``SceneConfig.from_dict`` (or ``Scene.settings``)."""

    version: int = SCENE_FORMAT_VERSION
    """Format version after upgrading (always SCENE_FORMAT_VERSION)."""
    source_version: int = SCENE_FORMAT_VERSION
    """Format version the file was written in (0 = no "version" key)."""
    data: Optional[Path] = None
    """Dataset the scene was trained on (absolute path as recorded)."""
    capture_kind: Optional[str] = None
    """Reader that loaded it: nerfstudio | colmap | llff ..."""
    finished: bool = False
    """Whether the run completed (False: only checkpoints, resume it)."""
    iterations: Optional[int] = None
    """Steps actually trained (set once finished)."""
    num_gaussians: Optional[int] = None
    """Gaussian count of the saved scene."""
    sh_degree: Optional[int] = None
    """SH degree of the saved Gaussians."""
    wall_time_s: Optional[float] = None
    """Training wall time, seconds (summed over resumed runs)."""
    scene_scale: Optional[float] = None
    """Scene scale of the capture."""
    num_train_views: Optional[int] = None
    """Number of training views."""
    num_eval_views: Optional[int] = None
    """Number of held-out views."""
    depth_supervision: bool = False
    """Whether depth maps supervised the geometry."""
    device: Optional[str] = None
    """Torch device the run trained on."""
    train: TrainSection = field(default_factory=TrainSection)
    """The run's TrainConfig (typed view + raw dict)."""
    language: Optional[dict[str, Any]] = None
    """The language field's metadata (levels, codec, clip ...) when the scene has one, else None."""
    language_config: Optional[dict[str, Any]] = None
    """The LanguageConfig the run used, as a dict (None without a language stage)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The upgraded dict itself."""

    @staticmethod
    def from_dict(data: Any, source: str | Path = "config.json") -> "SceneConfig":
        """Check, upgrade and type a config.json dict; ``source`` names the file in error messages."""
        src = str(source)
        if not isinstance(data, dict):
            raise _fail(src, f"expected a JSON object, got {type(data).__name__}")
        version = data.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise _fail(src, f"'version' must be a non-negative integer, got {version!r:.40}")
        if version > SCENE_FORMAT_VERSION:
            raise _fail(src, f"written by a newer langfield (scene format {version}; this one reads up to "
                             f"{SCENE_FORMAT_VERSION}): upgrade langfield to read it")
        upgraded = dict(data)
        for v in range(version, SCENE_FORMAT_VERSION):
            upgraded = _UPGRADES[v](upgraded)
        language = _section(upgraded, LANGUAGE_KEY, src)
        data_path = _typed(upgraded, "data", str, None, src)
        return SceneConfig(
            version=SCENE_FORMAT_VERSION,
            source_version=version,
            data=Path(data_path) if data_path else None,
            capture_kind=_typed(upgraded, "capture_kind", str, None, src),
            finished=_typed(upgraded, "finished", bool, False, src),
            iterations=_typed(upgraded, "iterations", int, None, src),
            num_gaussians=_typed(upgraded, "num_gaussians", int, None, src),
            sh_degree=_typed(upgraded, "sh_degree", int, None, src),
            wall_time_s=_typed(upgraded, "wall_time_s", (int, float), None, src),
            scene_scale=_typed(upgraded, "scene_scale", (int, float), None, src),
            num_train_views=_typed(upgraded, "num_train_views", int, None, src),
            num_eval_views=_typed(upgraded, "num_eval_views", int, None, src),
            depth_supervision=_typed(upgraded, "depth_supervision", bool, False, src),
            device=_typed(upgraded, "device", str, None, src),
            train=TrainSection.from_dict(_section(upgraded, "train", src), src),
            language=language if language and language.get("num_levels") else None,
            language_config=_section(upgraded, LANGUAGE_CONFIG_KEY, src),
            raw=upgraded,
        )

    @property
    def has_language(self) -> bool:
        """Whether the scene carries a language field."""
        return self.language is not None
