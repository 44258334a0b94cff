"""The scene directory: what ``reconstruct`` writes and everything else reads.

Layout (also documented in README.md)::

    SCENE/
      config.json        resolved run config: data path, capture kind, TrainConfig, counts
      point_cloud.ply    the Gaussians, standard 3DGS PLY (+ language columns when present)
      cameras.json       every train/eval camera: name, split, width, height, K, c2w (OpenCV)
      checkpoints/       resumable training checkpoints (the last 2)
      codec/             codec.pt + codec.json of a scene with a language field
      eval/              report.json + contact_sheet.png from held-out views (+ queries.json)
      manifest.json      sha256 and size of every scene file (see "manifest" below), written last
      features_cache/, text_cache/, selections/   caches and exports (not scene data)

All files are written atomically (``langfield.io``) so a crash never leaves a
half-written file behind.

The manifest covers the scene's data: ``config.json``, ``point_cloud.ply``,
``cameras.json`` and the (non-hidden) files directly in ``codec/`` and
``eval/``.  It leaves out what may change or vanish without the scene being
damaged: ``checkpoints/`` (pruned while training), the caches
(``features_cache/``, ``text_cache/``), exports (``selections/``) and hidden
files (temp files of ``langfield.io``, lock files).  ``load_scene`` and the
codec loader check the files they read against it before using them; a scene
written by an older langfield has none and loads unchecked.  Whoever rewrites
a covered file rewrites the manifest afterwards (``write_manifest``), and
whoever starts modifying a finished scene drops it first (``discard_manifest``),
so that a run killed half-way leaves an unchecked scene rather than one that
no longer matches its manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from langfield.integrity import sha256_file, torch_file_problem
from langfield.io import atomic_write_bytes, atomic_write_json, dumps_json
from langfield.scene_config import LANGUAGE_KEY, SCENE_FORMAT_VERSION, SceneConfig  # noqa: F401 (re-exported)
from langfield.sources.conventions import opengl_to_opencv_c2w
from langfield.types import DataError, View

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PLY_FILE = "point_cloud.ply"
CAMERAS_FILE = "cameras.json"
CHECKPOINT_DIR = "checkpoints"
EVAL_DIR = "eval"
TRAJECTORY_FILE = "trajectory_tum.txt"
"""The estimated camera trajectory of a map made online (``langfield slam``), TUM format."""
CODEC_DIR = "codec"
"""Where the language stage saves the scene's codec (``codec.pt`` + ``codec.json``)."""
MANIFEST_FILE = "manifest.json"



@dataclass
class SceneCamera:
    """One camera of a scene (pinhole, OpenCV axes, at the trained resolution)."""

    name: str
    """Frame name as the dataset spells it (nerfstudio file_path, image file name ...)."""
    split: str
    """"train" or "eval"."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    K: np.ndarray
    """[3, 3] intrinsics in pixels (pixel centres at +0.5)."""
    c2w: np.ndarray
    """[4, 4] camera-to-world, OpenCV axes."""

    def viewmat(self) -> torch.Tensor:
        """[4, 4] float32 world-to-camera matrix."""
        return torch.from_numpy(np.linalg.inv(self.c2w)).float()

    def to_view(self, device: str | torch.device = "cpu") -> View:
        """A pixel-less View of this camera for rendering."""
        return View(
            name=self.name,
            viewmat=self.viewmat().to(device),
            K=torch.from_numpy(np.asarray(self.K, dtype=np.float32)).to(device),
            width=int(self.width),
            height=int(self.height),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "width": int(self.width),
            "height": int(self.height),
            "K": np.asarray(self.K, dtype=float).tolist(),
            "c2w": np.asarray(self.c2w, dtype=float).tolist(),
        }

    @staticmethod
    def from_view(view: View, split: str) -> "SceneCamera":
        c2w = np.linalg.inv(view.viewmat.detach().cpu().double().numpy())
        return SceneCamera(view.name, split, view.width, view.height, view.K.detach().cpu().double().numpy(), c2w)


@dataclass
class Scene:
    """A loaded scene directory."""

    root: Path
    """The scene directory."""
    params: torch.nn.ParameterDict
    """The Gaussians (pre-activation, see ``langfield.gaussians.params``)."""
    cameras: list[SceneCamera]
    """Train and eval cameras."""
    config: dict[str, Any] = field(default_factory=dict)
    """Contents of config.json (``config["train"]`` is the TrainConfig as a dict); read it through ``settings``."""

    @property
    def settings(self) -> SceneConfig:
        """config.json typed and upgraded to the current format (``langfield.scene_config``)."""
        return SceneConfig.from_dict(self.config, self.root / CONFIG_FILE)

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def cameras_of(self, split: str) -> list[SceneCamera]:
        return [c for c in self.cameras if c.split == split]


# --------------------------------------------------------------------------- cameras


def save_cameras(path: Path, cameras: Iterable[SceneCamera]) -> None:
    atomic_write_json(path, {"version": SCENE_FORMAT_VERSION, "cameras": [c.to_json() for c in cameras]})


def load_cameras(path: Path) -> list[SceneCamera]:
    data = _read_json(path)
    try:
        out = []
        for c in data["cameras"]:
            K = np.asarray(c["K"], dtype=np.float64)
            c2w = np.asarray(c["c2w"], dtype=np.float64)
            if K.shape != (3, 3) or c2w.shape != (4, 4):
                raise ValueError("bad matrix shape")
            out.append(SceneCamera(str(c["name"]), str(c["split"]), int(c["width"]), int(c["height"]), K, c2w))
        return out
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed cameras file ({e})") from None


def write_transforms_json(path: Path, cameras: Iterable[SceneCamera]) -> None:
    """Write cameras as a nerfstudio-style transforms.json (per-frame intrinsics, OpenGL poses).

    ``file_path`` of each frame is the camera name, so ``langfield render
    --cameras`` names its outputs after the original images.
    """
    frames = []
    for c in cameras:
        frames.append(
            {
                "file_path": c.name,
                "fl_x": float(c.K[0, 0]),
                "fl_y": float(c.K[1, 1]),
                "cx": float(c.K[0, 2]),
                "cy": float(c.K[1, 2]),
                "w": int(c.width),
                "h": int(c.height),
                "split": c.split,
                # the axis flip is an involution: the same function converts OpenCV -> OpenGL
                "transform_matrix": opengl_to_opencv_c2w(c.c2w).tolist(),
            }
        )
    atomic_write_json(path, {"camera_model": "OPENCV", "frames": frames})


def read_transforms_cameras(path: Path) -> list[SceneCamera]:
    """Cameras of a nerfstudio transforms.json (images need not exist: only poses are read).

    Parsed and checked by the dataset reader's own per-frame parser
    (``sources.nerfstudio.parse_frame``): intrinsics from the frame, else the top
    level, ``camera_angle_x`` (Blender) when no focal length is given, rigid poses.
    """
    from langfield.sources.nerfstudio import read_transforms_frames

    frames, raw = read_transforms_frames(Path(path))
    cams = []
    for f, fr in zip(frames, raw):
        k = f.intrinsics
        K = np.array([[k.fx, 0, k.cx], [0, k.fy, k.cy], [0, 0, 1]], dtype=np.float64)
        cams.append(SceneCamera(f.name, str(fr.get("split", "render")), k.width, k.height, K, f.c2w))
    return cams


# --------------------------------------------------------------------------- scene


def save_scene(root: Path, params: torch.nn.ParameterDict, cameras: list[SceneCamera], config: dict[str, Any]) -> None:
    """Write config.json, point_cloud.ply and cameras.json (each atomically), then the manifest.

    The old manifest goes first: until the new one is written the scene is a
    mix of old and new files that no manifest describes.
    """
    from langfield.gaussians.ply import save_ply

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    discard_manifest(root)
    save_ply(root / PLY_FILE, params)  # atomic itself
    save_cameras(root / CAMERAS_FILE, cameras)
    atomic_write_json(root / CONFIG_FILE, {"version": SCENE_FORMAT_VERSION, **config})
    write_manifest(root)


def is_scene(root: Path) -> bool:
    root = Path(root)
    return (root / CONFIG_FILE).is_file() and (root / PLY_FILE).is_file()


def load_scene_config(root: Path) -> dict[str, Any]:
    root = Path(root)
    if not root.exists():
        from langfield.scene_lock import recover_for_reading

        recover_for_reading(root)  # a run killed in the middle of its final swap: finish it
    if not root.exists():
        raise DataError(f"{root}: scene directory does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected a scene directory)")
    path = root / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; {root} is not a langfield scene (run `langfield reconstruct` first)")
    data = _read_json(path)
    SceneConfig.from_dict(data, path)  # a newer format or a malformed section fails here, in one line
    return data


def load_scene(root: Path, device: str | torch.device = "cpu") -> Scene:
    """Load a scene directory; raises DataError naming the missing/broken file."""
    from langfield.gaussians.ply import load_ply

    root = Path(root)
    # Before anything is parsed: a damaged file is reported as damaged, not as whatever parse error it causes.
    verify_scene(root, files=(CONFIG_FILE, PLY_FILE, CAMERAS_FILE))
    config = load_scene_config(root)
    ply = root / PLY_FILE
    if not ply.is_file():
        raise DataError(f"{ply}: missing (the reconstruction did not finish; try `langfield reconstruct --resume`)")
    try:
        params = load_ply(ply)
    except DataError:
        raise
    except Exception as e:  # plyfile raises a zoo of exception types on corrupt input
        raise DataError(f"{ply}: unreadable PLY ({type(e).__name__}: {e})") from None
    cams_path = root / CAMERAS_FILE
    cameras = load_cameras(cams_path) if cams_path.is_file() else []
    return Scene(root=root, params=params.to(device), cameras=cameras, config=config)


def _read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


_CKPT_RE = re.compile(r"^ckpt_([0-9]+)\.pt$")
_warned_checkpoints: set[tuple[str, int, int]] = set()


def checkpoint_step(path: Path) -> int:
    """Training step of ``checkpoints/ckpt_<step>.pt`` (-1 for another name)."""
    m = _CKPT_RE.match(Path(path).name)
    return int(m.group(1)) if m else -1


def list_checkpoints(root: Path) -> list[Path]:
    """The scene's checkpoint files, oldest first (by step: names stop sorting after step 999999)."""
    d = Path(root) / CHECKPOINT_DIR
    found = [p for p in d.glob("ckpt_*.pt") if checkpoint_step(p) >= 0 and p.is_file()] if d.is_dir() else []
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(root: Path) -> Optional[Path]:
    """Newest intact checkpoint of a scene directory, or None when it has none.

    A newer checkpoint that is damaged (truncated, changed bytes: every member's
    CRC-32 is checked, which ``torch.load`` does not do) is skipped with a
    warning and the next older one is used; DataError when checkpoints exist
    but none is intact.
    """
    ckpts = list_checkpoints(root)
    problems: list[str] = []
    for path in reversed(ckpts):
        problem = torch_file_problem(path)
        if problem is None:
            for bad in problems:
                _warn_once(path, f"{bad}; resuming from the older {path.name} instead")
            return path
        problems.append(f"{path}: damaged checkpoint ({problem})")
    if problems:
        raise DataError(f"{Path(root) / CHECKPOINT_DIR}: no intact checkpoint to resume from ({'; '.join(problems)})")
    return None


def _warn_once(path: Path, message: str) -> None:
    # latest_checkpoint is asked more than once per run (reconstruct checks, then loads): say it once.
    st = path.stat()
    key = (message, st.st_mtime_ns, st.st_size)
    if key not in _warned_checkpoints:
        _warned_checkpoints.add(key)
        log.warning("%s", message)


def language_meta_of(config: Any) -> Optional[dict[str, Any]]:
    """The language section of a scene's config.json, or None when the scene has none.

    Lives here, not in ``train/``, so that readers of scenes (query commands,
    the viewer) never import training code.
    """
    section = config.get(LANGUAGE_KEY) if isinstance(config, dict) else None
    return section if isinstance(section, dict) and section.get("num_levels") else None


# --------------------------------------------------------------------------- manifest

MANIFEST_FORMAT = "langfield-scene-manifest"
MANIFEST_VERSION = 1
MANIFEST_TOP_FILES = (CONFIG_FILE, PLY_FILE, CAMERAS_FILE)
"""Files directly in SCENE/ that the manifest covers."""
MANIFEST_DIRS = (CODEC_DIR, EVAL_DIR)
"""Sub-directories whose non-hidden files (not recursively) the manifest covers."""
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DAMAGED = "the file was changed or damaged after the scene was written"


def is_manifest_file(rel: str) -> bool:
    """True for a scene-relative POSIX name (``"codec/codec.pt"``) that the manifest covers."""
    if rel in MANIFEST_TOP_FILES:
        return True
    parts = rel.split("/")
    return len(parts) == 2 and parts[0] in MANIFEST_DIRS and bool(parts[1]) and not parts[1].startswith(".")


def manifest_files(root: Path) -> list[str]:
    """Scene-relative names of the covered files that exist in ``root``, sorted."""
    root = Path(root)
    names = [n for n in MANIFEST_TOP_FILES if (root / n).is_file()]
    for d in MANIFEST_DIRS:
        sub = root / d
        if sub.is_dir():
            names += [f"{d}/{p.name}" for p in sub.iterdir() if is_manifest_file(f"{d}/{p.name}") and p.is_file()]
    return sorted(names)


def _rel_name(root: Path, name: Union[str, Path]) -> str:
    """``name`` (relative to the scene, or an absolute path inside it) as a covered scene-relative POSIX name."""
    p = Path(name)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(root.resolve())
        except ValueError:
            raise ValueError(f"{name} is not inside the scene {root}") from None
    rel = p.as_posix()
    if not is_manifest_file(rel):
        raise ValueError(f"{rel!r} is not a file the scene manifest covers")
    return rel


def _entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def _files_digest(files: dict[str, Any]) -> str:
    # The manifest's own checksum: a changed byte in manifest.json is reported as such, not as a damaged PLY.
    return hashlib.sha256(dumps_json(files, indent=None).encode("utf-8")).hexdigest()


def write_manifest(root: Path, *, changed: Optional[Sequence[Union[str, Path]]] = None) -> Optional[Path]:
    """Write ``SCENE/manifest.json`` (atomically, fsynced): sha256 and size of the covered files.

    ``changed=None`` (the writer of the whole scene, last thing it does): hash
    every covered file present.  ``changed=[names]`` (a command that rewrote
    some files of a finished scene, e.g. ``eval/report.json``): rehash only
    those (dropping the ones that no longer exist) and keep every other entry
    as recorded, so that damage elsewhere is not vouched for; a scene without a
    manifest then stays without one.  Returns the manifest path, or None when
    nothing was written.
    """
    root = Path(root)
    if changed is None:
        files = {rel: _entry(root / rel) for rel in manifest_files(root)}
    else:
        old = read_manifest(root)
        if old is None:
            return None
        files = dict(old)
        for name in changed:
            rel = _rel_name(root, name)
            if (root / rel).is_file():
                files[rel] = _entry(root / rel)
            else:
                files.pop(rel, None)
    files = dict(sorted(files.items()))
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "algorithm": "sha256",
           "files": files, "files_sha256": _files_digest(files)}
    return atomic_write_bytes(root / MANIFEST_FILE, (dumps_json(doc) + "\n").encode("utf-8"), fsync=True)


def discard_manifest(root: Path) -> None:
    """Remove the manifest before modifying a finished scene's files (see the module docstring)."""
    (Path(root) / MANIFEST_FILE).unlink(missing_ok=True)


def read_manifest(root: Path) -> Optional[dict[str, dict[str, Any]]]:
    """The manifest's ``{name: {"sha256", "size"}}``, or None when the scene has none; DataError if malformed."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return None
    fix = f"rerun `langfield reconstruct`, or delete {path.name} to load the scene unchecked"
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: damaged scene manifest, not valid JSON ({e}); {fix}") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path}: not a langfield scene manifest; {fix}")
    if doc.get("version") != MANIFEST_VERSION:
        raise DataError(f"{path}: scene manifest version {doc.get('version')!r} is not supported "
                        f"(expected {MANIFEST_VERSION}); {fix}")
    files = doc.get("files")
    ok = isinstance(files, dict) and all(
        isinstance(k, str) and is_manifest_file(k) and isinstance(v, dict) and isinstance(v.get("sha256"), str)
        and bool(_HEX64.match(v["sha256"])) and type(v.get("size")) is int and v["size"] >= 0
        for k, v in files.items())
    if not ok or doc.get("files_sha256") != _files_digest(files):
        raise DataError(f"{path}: damaged scene manifest (its entries do not match its own checksum); {fix}")
    return files


def verify_scene(root: Path, files: Optional[Iterable[Union[str, Path]]] = None) -> bool:
    """Check scene files against ``SCENE/manifest.json``; DataError naming the first damaged or missing one.

    ``files`` (scene-relative names such as ``"codec/codec.pt"``, or paths
    inside ``root``): check only those, e.g. the ones about to be read; a name
    that is neither listed nor present is fine (an optional file the scene
    lacks).  None: every listed file, and every covered file present but not
    listed.  Returns False (nothing checked) for a scene without a manifest,
    True when everything checked matches.
    """
    root = Path(root)
    entries = read_manifest(root)
    if entries is None:
        return False
    wanted = sorted(set(entries) | set(manifest_files(root))) if files is None else [_rel_name(root, f) for f in files]
    for rel in wanted:
        path = root / rel
        entry = entries.get(rel)
        if entry is None:
            if path.is_file():
                raise DataError(f"{path}: not listed in {MANIFEST_FILE} (added after the scene was written)")
            continue
        if not path.is_file():
            raise DataError(f"{path}: missing, but listed in {MANIFEST_FILE} (deleted after the scene was written)")
        size = path.stat().st_size
        if size != entry["size"]:
            raise DataError(f"{path}: size {size} B does not match {MANIFEST_FILE} ({entry['size']} B; {_DAMAGED})")
        if sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path}: sha256 does not match {MANIFEST_FILE} ({_DAMAGED})")
    return True


def load_scene_codec(root: Path, codec_dir: str = CODEC_DIR, device: str | torch.device = "cpu") -> tuple[Any, Optional[dict]]:
    """A scene's codec (``codec.load_codec``), its files checked against ``manifest.json`` first.

    The check lives here, not in ``codec/``, because the manifest is the scene
    directory's business and ``codec`` sits below ``scene`` in the layering.
    """
    from langfield.codec.io import CONFIG_NAME, WEIGHTS_NAME, load_codec

    root = Path(root)
    verify_scene(root, files=(f"{codec_dir}/{CONFIG_NAME}", f"{codec_dir}/{WEIGHTS_NAME}"))
    return load_codec(root / codec_dir, device=str(device))
