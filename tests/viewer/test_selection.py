"""3D selection drawn as splats: depth-correct highlight, selection only, clear, and the same set as `select`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langfield.viewer import RenderCore, RenderRequest, ViewerCamera
from langfield.viewer.highlight import MIN_WEIGHT, Highlight, apply_highlight


def _camera(core: RenderCore, i: int = 0, size: int = 64) -> ViewerCamera:
    return ViewerCamera.from_scene_camera(core.scene.cameras_of("eval")[i]).resized(size)


def _gaussian_depths(core: RenderCore, cam: ViewerCamera) -> torch.Tensor:
    """[N] camera depth of every Gaussian's mean."""
    w2c = torch.from_numpy(np.linalg.inv(cam.c2w)).float()
    means = core.field.gaussians.means.float()
    return means @ w2c[2, :3] + w2c[2, 3]


def _far_half(core: RenderCore, cam: ViewerCamera) -> Highlight:
    """A highlight of the farther half of the Gaussians (in bright green) as seen from ``cam``."""
    z = _gaussian_depths(core, cam)
    mask = z > z.median()
    colors = torch.zeros(len(mask), 3)
    colors[:, 1] = 1.0
    return Highlight(mask, colors, core.field.version)


def test_selected_set_and_ply_are_exactly_langfield_selects(core, viewer_scene, tmp_path):
    from langfield.cli_language import Select, run_select
    from langfield.gaussians.ply import load_ply
    from langfield.query import LanguageField
    from langfield.viewer.selection import DEFAULT_THRESHOLD, Selector

    assert DEFAULT_THRESHOLD == Select(scene=viewer_scene, text="x", out=tmp_path / "x.ply").threshold
    fresh = LanguageField.load(viewer_scene)  # what the CLI loads, independent of the viewer's core
    selector = Selector(core)
    for text, threshold in (("floor", DEFAULT_THRESHOLD), ("wall", 0.55)):
        sel = selector.select(text, threshold=threshold)
        want = fresh.select(text, threshold)
        assert sel.count > 0 and torch.equal(sel.mask, want.mask.bool()) and sel.level == want.level
        assert torch.equal(sel.highlight.mask, sel.mask)
    sel = selector.select("floor")
    cli = run_select(Select(scene=viewer_scene, text="floor", out=tmp_path / "cli.ply"))
    ours = load_ply(selector.export(sel, tmp_path / "viewer"))
    theirs = load_ply(tmp_path / "cli.ply")
    assert cli["selected"] == sel.count
    assert torch.equal(ours["means"], theirs["means"]) and torch.equal(ours["latents"], theirs["latents"])


@pytest.mark.parametrize("mode", ["rgb", "relevancy"])
def test_an_unselected_occluder_in_front_keeps_its_pixels(core, mode):
    cam = _camera(core, 1)
    hl = _far_half(core, cam)
    near = core.field.render(cam, what=("alpha",), subset=~hl.mask).alpha
    far = core.field.render(cam, what=("alpha",), subset=hl.mask).alpha
    occluded = near > 1.0 - MIN_WEIGHT  # the near half alone is opaque here
    # the test means something: drawn without depth, the selection would cover many of these pixels
    assert int((occluded & (far > 0.5)).sum()) >= 20
    req = dict(mode=mode, query="floor")
    plain = core.render(cam, RenderRequest(**req)).image
    shown = core.render(cam, RenderRequest(**req, selection=hl)).image
    occ = occluded.numpy()
    assert np.array_equal(shown[occ], plain[occ])
    # where the selection is what the camera sees, it is tinted green
    visible = ((near < 0.05) & (far > 0.9)).numpy()
    assert visible.sum() >= 20
    gain = shown[visible].astype(int) - plain[visible].astype(int)
    assert (gain[:, 1] > 10).mean() > 0.9


def test_clearing_restores_the_plain_frame_and_costs_no_pass(core):
    cam = _camera(core, 1)
    for mode in ("rgb", "depth", "features"):
        plain = core.render(cam, RenderRequest(mode=mode))
        passes = core.passes
        hl = _far_half(core, cam)
        shown = core.render(cam, RenderRequest(mode=mode, selection=hl))
        assert core.passes == passes + 1 and not np.array_equal(shown.image, plain.image)
        cleared = core.render(cam, RenderRequest(mode=mode))
        assert core.passes == passes + 1  # the plain pass is still cached
        assert np.array_equal(cleared.image, plain.image) and np.array_equal(cleared.depth, plain.depth)


def test_relevancy_with_a_selection_is_one_pass_and_level_switches_are_free(core):
    cam = _camera(core, 2)
    hl = _far_half(core, cam)
    passes = core.passes
    auto = core.render(cam, RenderRequest(mode="relevancy", query="floor", selection=hl))
    fixed = [core.render(cam, RenderRequest(mode="relevancy", query="floor", selection=hl, level=lv)) for lv in (0, 1)]
    assert core.passes == passes + 1
    assert np.array_equal(fixed[auto.level].image, auto.image)
    # the highlight does not change the relevancy itself
    bare = core.render(cam, RenderRequest(mode="relevancy", query="floor"))
    np.testing.assert_allclose(bare.relevancy, auto.relevancy, atol=1e-5)


def test_selection_only_renders_the_selected_gaussians_alone(core):
    cam = _camera(core, 0)
    hl = _far_half(core, cam)
    only = core.render(cam, RenderRequest(mode="rgb", selection=hl, selection_only=True))
    frame = core.field.render(cam, what=("rgb", "alpha"), extra=hl.channels("cpu"), subset=hl.mask)
    want = apply_highlight(frame.rgb, frame.extra)
    np.testing.assert_array_equal(only.image, (want.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    near = core.field.render(cam, what=("alpha",), subset=~hl.mask).alpha
    hidden_before = ((near > 0.99) & (frame.alpha > 0.9)).numpy()
    plain = core.render(cam, RenderRequest(mode="rgb")).image
    assert hidden_before.sum() >= 20 and not np.array_equal(only.image[hidden_before], plain[hidden_before])
    # in relevancy mode "selection only" shows the same (tinted colours, no 2D heatmap)
    rel = core.render(cam, RenderRequest(mode="relevancy", query="floor", selection=hl, selection_only=True))
    assert np.array_equal(rel.image, only.image) and "selection only" in rel.note


def test_a_stale_or_empty_selection_is_not_drawn(core):
    cam = _camera(core, 1)
    plain = core.render(cam, RenderRequest(mode="rgb")).image
    hl = _far_half(core, cam)
    stale = Highlight(hl.mask, hl.colors, core.field.version + 1)
    res = core.render(cam, RenderRequest(mode="rgb", selection=stale))
    assert np.array_equal(res.image, plain) and "select again" in res.note
    empty = Highlight(torch.zeros_like(hl.mask), hl.colors, core.field.version)
    assert np.array_equal(core.render(cam, RenderRequest(mode="rgb", selection=empty)).image, plain)
    with pytest.raises(ValueError, match="bool"):
        Highlight(hl.mask.float(), hl.colors, 0)


def test_apply_highlight_rule():
    image = torch.full((1, 3, 3), 0.5)
    comp = torch.tensor([[[0.0, 0, 0, 0], [MIN_WEIGHT / 2, 0, MIN_WEIGHT / 2, 0], [1.0, 0, 1.0, 0]]])
    out = apply_highlight(image, comp, strength=0.75)
    assert torch.equal(out[0, 0], image[0, 0]) and torch.equal(out[0, 1], image[0, 1])
    torch.testing.assert_close(out[0, 2], torch.tensor([0.125, 0.875, 0.125]))
