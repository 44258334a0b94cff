"""The scene's training cameras as clickable frustums in one tab: a click moves that tab's camera there.

Added to the client's own scene (``client.scene``), so showing, hiding and jumping are per tab.
viser draws frustums with OpenCV axes (+z forward, +y down), langfield's camera convention, so a
stored camera-to-world pose is used as is.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from langfield.viewer.camera import ViewerCamera

FRUSTUM_COLOR = (40, 110, 220)
"""Colour of a training camera's frustum."""
FRUSTUM_SCALE = 0.04
"""Frustum size as a fraction of the scene's extent."""


def matrix_to_wxyz(rotation: np.ndarray) -> np.ndarray:
    """(w, x, y, z) unit quaternion of a [3, 3] rotation (viser's convention)."""
    import viser.transforms as vtf

    return np.asarray(vtf.SO3.from_matrix(np.asarray(rotation, dtype=np.float64)).wxyz)


def jump_to(client: Any, camera: ViewerCamera) -> None:
    """Move ``client``'s viewer camera onto ``camera`` (pose and vertical field of view)."""
    with client.atomic():
        client.camera.position = camera.c2w[:3, 3]
        client.camera.wxyz = matrix_to_wxyz(camera.c2w[:3, :3])  # keeps the orbit distance, turns the view
        client.camera.fov = camera.fov_y


def add_training_frustums(client: Any, cameras: list[ViewerCamera], extent: float,
                          on_jump: Callable[[int], None]) -> list[Any]:
    """One frustum per camera under ``/training_cameras`` in ``client.scene``; clicking camera i calls on_jump(i)."""
    handles = []
    scale = max(extent, 1e-3) * FRUSTUM_SCALE
    for i, cam in enumerate(cameras):
        handle = client.scene.add_camera_frustum(
            f"/training_cameras/{i:04d}", fov=cam.fov_y, aspect=cam.width / cam.height, scale=scale,
            color=FRUSTUM_COLOR, wxyz=matrix_to_wxyz(cam.c2w[:3, :3]), position=cam.c2w[:3, 3])
        handle.on_click(lambda _event, i=i: on_jump(i))
        handles.append(handle)
    return handles
