"""The viewer's render core: every mode on a tiny trained scene, cameras, 3D selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langfield.types import LangfieldError
from langfield.viewer import MODES, RenderCore, RenderRequest, ViewerCamera
from langfield.viewer.camera import fit_size, quat_to_matrix


def _eval_views(data):
    from langfield.sources import load_capture, load_views

    cap = load_capture(data)
    return load_views(cap, cap.eval_ids, device="cpu"), cap.labels


def _camera(core, split="eval", i=0) -> ViewerCamera:
    return ViewerCamera.from_scene_camera(core.scene.cameras_of(split)[i])


# --------------------------------------------------------------------------- cameras (pure)


def test_fit_size_caps_long_side_and_never_upscales():
    assert fit_size(1920, 1080, 512) == (512, 288)
    assert fit_size(300, 800, 512) == (192, 512)
    assert fit_size(64, 48, 512) == (64, 48)


def test_camera_from_pose_matches_rotation_and_fov():
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0])
    x, y, z, w = rot.as_quat()
    cam = ViewerCamera.from_pose(np.array([w, x, y, z]), np.array([1.0, 2.0, 3.0]), fov_y=0.9, width=400, height=300)
    np.testing.assert_allclose(cam.c2w[:3, :3], rot.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(quat_to_matrix(np.array([2.0, 0, 0, 0])), np.eye(3))  # any norm
    assert cam.c2w[:3, 3].tolist() == [1.0, 2.0, 3.0]
    assert cam.fov_y == pytest.approx(0.9)
    small = cam.resized(200)
    assert (small.width, small.height) == (200, 150) and small.fov_y == pytest.approx(0.9)
    assert small.K[0, 2] == pytest.approx(100.0) and small.K[1, 2] == pytest.approx(75.0)


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_uint8_image_of_the_camera_size(core, mode):
    cam = _camera(core).resized(40)
    res = core.render(cam, RenderRequest(mode=mode, query="floor"))
    assert res.image.dtype == np.uint8 and res.image.shape == (cam.height, cam.width, 3)
    assert res.depth.shape == (cam.height, cam.width) and res.note == ""
    assert res.image.max() > 0
    if mode == "relevancy":
        assert res.level in (0, 1) and res.relevancy is not None and res.relevancy.shape == (cam.height, cam.width)
    else:
        assert res.level is None and res.relevancy is None


def test_modes_give_different_images(core):
    cam = _camera(core)
    images = {m: core.render(cam, RenderRequest(mode=m, query="wall")).image for m in MODES}
    for a in MODES:
        for b in MODES:
            if a < b:
                assert np.abs(images[a].astype(int) - images[b].astype(int)).mean() > 5, (a, b)


def test_relevancy_of_a_label_is_highest_on_its_pixels(core, synthetic_dataset):
    views, labels = _eval_views(synthetic_dataset)
    for text in ("floor", "wall"):
        ids = [i for i, lab in labels.items() if text in (lab.part, lab.whole)]
        hits = 0
        for view in views:
            cam = ViewerCamera(np.linalg.inv(view.viewmat.double().numpy()), view.K.double().numpy(), view.width,
                               view.height)
            res = core.render(cam, RenderRequest(mode="relevancy", query=text))
            on = np.isin(view.semantics.numpy(), ids)
            assert res.relevancy[on].mean() > res.relevancy[~on].mean() + 0.1, text
            y, x = np.unravel_index(np.argmax(res.relevancy), res.relevancy.shape)
            hits += bool(on[y, x])
            # the LERF display rule: only pixels where the query beats the negatives get heat colours
            plain = core.render(cam, RenderRequest(mode="rgb")).image
            assert not np.array_equal(res.image, plain)
        assert hits >= 0.75 * len(views), (text, hits)


def test_fixed_level_is_reported_and_checked(core):
    cam = _camera(core).resized(32)
    assert core.render(cam, RenderRequest(mode="relevancy", query="floor", level=1)).level == 1
    assert core.render(cam, RenderRequest(mode="features", level=0)).level == 0
    with pytest.raises(LangfieldError, match="out of range"):
        core.render(cam, RenderRequest(mode="relevancy", query="floor", level=2))


def test_empty_query_shows_rgb_with_a_note(core):
    cam = _camera(core).resized(32)
    res = core.render(cam, RenderRequest(mode="relevancy", query="  "))
    assert np.array_equal(res.image, core.render(cam, RenderRequest(mode="rgb")).image)
    assert "query" in res.note


def test_pca_colours_are_stable_across_calls_and_loads(core, viewer_scene):
    cam = _camera(core, "train", 3)
    first = core.render(cam, RenderRequest(mode="features")).image
    assert np.array_equal(first, core.render(cam, RenderRequest(mode="features")).image)
    again = RenderCore(viewer_scene, backend="cpu").render(cam, RenderRequest(mode="features")).image
    assert np.array_equal(first, again)
    # a surface keeps its colour when the camera changes: the basis is the scene's, not the view's
    basis = core.pca_basis(None)
    assert basis.components.shape == (core.language.num_levels * core.language.latent_dim, 3)


def test_depth_mode_maps_near_to_the_red_end(core):
    cam = _camera(core)
    res = core.render(cam, RenderRequest(mode="depth"))
    img = res.image.astype(float)
    valid = (res.depth > 0) & (img.sum(-1) > 0)
    d = res.depth[valid]
    near, far = d <= np.quantile(d, 0.2), d >= np.quantile(d, 0.8)
    red_minus_blue = (img[..., 0] - img[..., 2])[valid]
    assert red_minus_blue[near].mean() > red_minus_blue[far].mean() + 50
    # monotone-ish: redness falls with depth
    assert np.corrcoef(d, red_minus_blue)[0, 1] < -0.5


def test_scene_without_language_still_renders(plain_scene):
    core = RenderCore(plain_scene, backend="cpu")
    assert not core.has_language and core.modes == ("rgb", "depth") and "no language" in core.language_note
    cam = ViewerCamera.from_scene_camera(core.scene.cameras[0]).resized(32)
    rgb = core.render(cam, RenderRequest(mode="rgb")).image
    res = core.render(cam, RenderRequest(mode="relevancy", query="floor"))
    assert np.array_equal(res.image, rgb) and "no language" in res.note
    with pytest.raises(LangfieldError, match="unknown viewer mode"):
        core.render(cam, RenderRequest(mode="normals"))  # type: ignore[arg-type]


def test_initial_camera_is_the_first_training_camera(core):
    first = core.scene.cameras_of("train")[0]
    cam = core.initial_camera()
    np.testing.assert_allclose(cam.c2w, first.c2w)
    assert (cam.width, cam.height) == (first.width, first.height)


# --------------------------------------------------------------------------- 3D selection


def test_select_and_export(core, tmp_path):
    from langfield.gaussians.ply import load_ply
    from langfield.viewer.selection import Selector

    selector = Selector(core)
    sel = selector.select("floor")
    assert 0 < sel.count < core.scene.num_gaussians and sel.level in (0, 1)
    hl = sel.highlight
    assert torch.equal(hl.mask, sel.mask) and hl.colors.shape == (core.scene.num_gaussians, 3)
    assert float(hl.colors.min()) >= 0.0 and float(hl.colors.max()) <= 1.0
    # the floor is the lowest surface along the cameras' up direction
    up = core.up_direction()
    all_h = core.scene.params["means"].detach().numpy() @ up
    assert np.median(all_h[sel.mask.numpy()]) < np.median(all_h)
    path = selector.export(sel, tmp_path)
    assert path == tmp_path / "floor.ply"
    assert load_ply(path)["means"].shape[0] == sel.count
    with pytest.raises(LangfieldError, match="type a query"):
        selector.select(" ")
    empty = selector.select("floor", threshold=1.0)
    with pytest.raises(LangfieldError, match="nothing selected"):
        selector.export(empty, tmp_path)
    assert torch.equal(selector.select("floor").mask, sel.mask)  # decoded once, same answer


def test_viewer_never_imports_training_code(viewer_scene):
    """ARCHITECTURE.md: the viewer talks to render/query, never to train/ (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from langfield.viewer.core import RenderCore, RenderRequest\n"
        "from langfield.viewer.camera import ViewerCamera\n"
        f"root = {str(viewer_scene)!r}\n"
        "core = RenderCore(root, backend='cpu')\n"
        "cam = ViewerCamera.from_scene_camera(core.scene.cameras[0]).resized(48)\n"
        "for mode in ('rgb', 'depth', 'features', 'relevancy'):\n"
        "    core.render(cam, RenderRequest(mode=mode, query='floor'))\n"
        "bad = sorted(m for m in sys.modules if m.startswith('langfield.train'))\n"
        "print('IMPORTED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout, out.stdout


# --------------------------------------------------------------------------- passes, caches, methods


def test_level_and_mode_switches_reuse_the_pass(core):
    cam = _camera(core, "train", 1).resized(48)
    core.render(cam, RenderRequest(mode="relevancy", query="floor"))
    passes = core.passes
    auto = core.render(cam, RenderRequest(mode="relevancy", query="floor"))
    fixed = [core.render(cam, RenderRequest(mode="relevancy", query="floor", level=lv)) for lv in (0, 1)]
    assert core.passes == passes  # a level switch is a re-pick of maps already rendered
    assert [f.level for f in fixed] == [0, 1] and auto.level in (0, 1)
    assert np.array_equal(fixed[auto.level].relevancy, auto.relevancy)
    core.render(cam, RenderRequest(mode="features"))
    core.render(cam, RenderRequest(mode="features", level=0))
    assert core.passes == passes + 1  # features at any level: one latent pass
    c2w = cam.c2w.copy()
    c2w[:3, 3] += 1e-3
    moved = ViewerCamera(c2w, cam.K, cam.width, cam.height)
    core.render(moved, RenderRequest(mode="relevancy", query="floor", level=1))
    assert core.passes == passes + 2  # a new camera renders again


def test_every_relevancy_method_lights_the_same_label(core, synthetic_dataset):
    from langfield.query.field import RELEVANCY_METHODS

    views, labels = _eval_views(synthetic_dataset)
    view = views[0]
    ids = [i for i, lab in labels.items() if "floor" in (lab.part, lab.whole)]
    on = np.isin(view.semantics.numpy(), ids)
    cam = ViewerCamera(np.linalg.inv(view.viewmat.double().numpy()), view.K.double().numpy(), view.width, view.height)
    for method in RELEVANCY_METHODS:
        res = core.render(cam, RenderRequest(mode="relevancy", query="floor", method=method))
        assert res.relevancy[on].mean() > res.relevancy[~on].mean() + 0.1, method
    with pytest.raises(LangfieldError, match="unknown relevancy method"):
        core.render(cam, RenderRequest(mode="relevancy", query="floor", method="nearest"))


# --------------------------------------------------------------------------- relevancy colours


def test_relevancy_overlay_is_heatmap_overlays_rule_and_styles_change_it():
    from langfield.query import heatmap_overlay, normalize_relevancy
    from langfield.viewer.colors import COLORMAPS, RelevancyStyle, relevancy_overlay

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(40, 50, 3, generator=g)
    rel = torch.rand(40, 50, generator=g) * 0.6 + 0.2  # some pixels beat the negatives (> 0.5), most do not
    want = heatmap_overlay(rgb, normalize_relevancy(rel, "lerf")).astype(int)
    got = relevancy_overlay(rgb, rel).astype(int)
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.95
    images = [relevancy_overlay(rgb, rel, RelevancyStyle(colormap=c)) for c in COLORMAPS]
    assert all(not np.array_equal(a, b) for a, b in zip(images, images[1:]))
    # a fixed range: raw 0.65 sits in the middle of (0.5, 0.8) in every view, whatever the view's maximum
    flat = torch.full((4, 4), 0.65)
    mid = relevancy_overlay(torch.zeros(4, 4, 3), flat, RelevancyStyle(range=(0.5, 0.8)))
    top = relevancy_overlay(torch.zeros(4, 4, 3), flat)  # auto: the view's max is the top colour
    assert not np.array_equal(mid, top)
    cold = relevancy_overlay(rgb, torch.full((40, 50), 0.4), RelevancyStyle(range=(0.5, 0.8)))
    np.testing.assert_array_equal(cold, (rgb * 0.3 * 255 + 0.5).to(torch.uint8).numpy())  # nothing relevant: dimmed
    with pytest.raises(ValueError, match="colormap"):
        RelevancyStyle(colormap="jet")
    with pytest.raises(ValueError, match="lo < hi"):
        RelevancyStyle(range=(0.8, 0.5))


def test_relevancy_frame_uses_the_requested_style(core):
    from langfield.viewer.colors import RelevancyStyle

    cam = _camera(core).resized(40)
    base = core.render(cam, RenderRequest(mode="relevancy", query="floor"))
    passes = core.passes
    hot = core.render(cam, RenderRequest(mode="relevancy", query="floor", style=RelevancyStyle(colormap="hot")))
    assert core.passes == passes and not np.array_equal(hot.image, base.image)  # re-coloured, not re-rendered
    np.testing.assert_array_equal(hot.relevancy, base.relevancy)
