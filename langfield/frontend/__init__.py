"""langfield.frontend: from a video or unposed photos to a posed nerfstudio dataset.

``frames`` (frame selection, photo orientation) -> ``sfm`` (pycolmap SIFT, matching, mapping,
undistortion; resumable stages) -> ``normalize`` (centre, scale, +z up) -> ``export``
(transforms.json, images/, sparse_pc.ply, colmap/sparse/0); ``poses.estimate_poses`` runs them
all, ``input`` wires them into ``reconstruct``, ``accuracy`` measures poses against a reference.
Submodules are imported on use: pycolmap and OpenCV load only when a front end runs.
"""
