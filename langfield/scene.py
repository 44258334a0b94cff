"""The scene directory: what ``reconstruct`` writes and everything else reads.

Layout (also documented in README.md)::

    SCENE/
      config.json        resolved run config: data path, capture kind, TrainConfig, counts
      point_cloud.ply    the Gaussians, standard 3DGS PLY (+ language columns when present)
      cameras.json       every train/eval camera: name, split, width, height, K, c2w (OpenCV)
      checkpoints/       resumable training checkpoints (the last 2)
      eval/              report.json + contact_sheet.png from held-out views

All files are written atomically (``langfield.io``) so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from langfield.io import atomic_write_json
from langfield.sources.conventions import opengl_to_opencv_c2w
from langfield.types import DataError, View

CONFIG_FILE = "config.json"
PLY_FILE = "point_cloud.ply"
CAMERAS_FILE = "cameras.json"
CHECKPOINT_DIR = "checkpoints"
EVAL_DIR = "eval"
SCENE_FORMAT_VERSION = 1
LANGUAGE_KEY = "language"
"""config.json section of a scene with a language field (written by the training side)."""



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
    """Contents of config.json (``config["train"]`` is the TrainConfig as a dict)."""

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

    Intrinsics come from the frame, else from the top level; ``camera_angle_x``
    (Blender) is accepted when no focal length is given.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise DataError(f"{path}: no 'frames' list in transforms file")
    cams = []
    for i, fr in enumerate(data["frames"]):
        try:
            def get(key: str) -> Any:
                return fr[key] if key in fr else data[key]

            w, h = int(get("w")), int(get("h"))
            if "fl_x" in fr or "fl_x" in data:
                fx = float(get("fl_x"))
                fy = float(fr.get("fl_y", data.get("fl_y", fx)))
            else:
                fx = fy = 0.5 * w / np.tan(0.5 * float(get("camera_angle_x")))
            cx = float(fr.get("cx", data.get("cx", w / 2.0)))
            cy = float(fr.get("cy", data.get("cy", h / 2.0)))
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
            if c2w.shape == (3, 4):
                c2w = np.vstack([c2w, [0, 0, 0, 1]])
            if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
                raise ValueError("transform_matrix is not a finite 4x4 matrix")
            name = str(fr.get("file_path", f"frame_{i:05d}.png"))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: frame {i} is malformed ({type(e).__name__}: {e})") from None
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
        cams.append(SceneCamera(name, str(fr.get("split", "render")), w, h, K, opengl_to_opencv_c2w(c2w)))
    return cams


# --------------------------------------------------------------------------- scene


def save_scene(root: Path, params: torch.nn.ParameterDict, cameras: list[SceneCamera], config: dict[str, Any]) -> None:
    """Write config.json, point_cloud.ply and cameras.json (each atomically)."""
    from langfield.gaussians.ply import save_ply

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    save_ply(root / PLY_FILE, params)  # atomic itself
    save_cameras(root / CAMERAS_FILE, cameras)
    atomic_write_json(root / CONFIG_FILE, {"version": SCENE_FORMAT_VERSION, **config})


def is_scene(root: Path) -> bool:
    root = Path(root)
    return (root / CONFIG_FILE).is_file() and (root / PLY_FILE).is_file()


def load_scene_config(root: Path) -> dict[str, Any]:
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: scene directory does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected a scene directory)")
    path = root / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; {root} is not a langfield scene (run `langfield reconstruct` first)")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def load_scene(root: Path, device: str | torch.device = "cpu") -> Scene:
    """Load a scene directory; raises DataError naming the missing/broken file."""
    from langfield.gaussians.ply import load_ply

    root = Path(root)
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def latest_checkpoint(root: Path) -> Optional[Path]:
    """Newest checkpoint of a scene directory, or None."""
    d = Path(root) / CHECKPOINT_DIR
    ckpts = sorted(d.glob("ckpt_*.pt")) if d.is_dir() else []
    return ckpts[-1] if ckpts else None


def language_meta_of(config: Any) -> Optional[dict[str, Any]]:
    """The language section of a scene's config.json, or None when the scene has none.

    Lives here, not in ``train/``, so that readers of scenes (query commands,
    the viewer) never import training code.
    """
    section = config.get(LANGUAGE_KEY) if isinstance(config, dict) else None
    return section if isinstance(section, dict) and section.get("num_levels") else None
