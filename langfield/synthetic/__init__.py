"""Procedural synthetic indoor scene: exact ground truth from an analytic numpy ray caster.

The bundled demo input and test fixture: a textured room with labelled
furniture (parts and wholes), rendered to a nerfstudio-layout dataset with
depth, semantics, labels.json and an SfM-like coloured point cloud.

    >>> from langfield.synthetic import generate_scene, SceneConfig
    >>> transforms = generate_scene(Path("demo"), seed=0)   # 320x240, 48 train + 8 eval

Command line: ``python -m langfield.synthetic OUT --seed 0``.

Camera paths: ``path="ring"`` (default) or ``"smooth"`` / ``"static"`` (``paths.smooth_path``, a
continuous walk as a video sees it); ``video.render_video`` writes such a path as an MP4 (optionally
with rotation metadata) plus the same frames as a ground-truth dataset.

Conventions: world z up, floor at z = 0, metres. transforms.json poses are
OpenGL c2w (``c2w_gl = c2w_cv @ diag(1, -1, -1, 1)``); depth PNGs hold z-depth
in millimetres; every primitive has its own semantic id (the four table legs
are four ids that share the label {"part": "table leg", "whole": "table"}).
"""

from .config import SceneConfig
from .generate import DEPTH_SCALE, generate_scene
from .paths import smooth_path
from .video import render_video, write_video

__all__ = ["DEPTH_SCALE", "SceneConfig", "generate_scene", "render_video", "smooth_path", "write_video"]
