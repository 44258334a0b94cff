"""One browser tab's controls and state: built per client on connect, so a reload starts fresh.

Everything a user sets (mode, query, level, resolution, selection) lives here, not on the
server: two tabs never see each other's query, and a reloaded tab shows an empty query box
instead of appending to the old text. A query (and its negatives) applies when it is
submitted -- Enter in the box or the Search button -- never on each keystroke.
"""

from __future__ import annotations

from typing import Any, Optional

from langfield.types import LangfieldError
from langfield.viewer.camera import ViewerCamera
from langfield.viewer.colors import COLORMAPS, RelevancyStyle
from langfield.viewer.config import ViewerConfig
from langfield.viewer.core import DEFAULT_METHOD, RenderCore, RenderRequest, RenderResult
from langfield.viewer.loop import ClientLoop
from langfield.viewer.pointer import PointerPanel, remember_query
from langfield.viewer.selection import DEFAULT_THRESHOLD

RESOLUTIONS: tuple[int, ...] = (256, 384, 512, 768, 1024, 1280)
"""Long sides the resolution control offers (the command line's ``--max-size`` is added when missing)."""
METHOD_LABELS: dict[str, str] = {
    "splat-sims": "crisp: per-Gaussian scores (fast)",
    "splat-relevancy": "per-Gaussian relevancy",
    "pixel": "per-pixel decode (slow, LangSplat)",
}
"""Relevancy methods offered in the browser (``langfield.query.field.RELEVANCY_METHODS``)."""
SELECTION_VIEWS: tuple[str, ...] = ("highlight in scene", "selection only", "hidden")
"""How a 3D selection is drawn: tinted inside the scene (depth-correct), alone, or not at all (kept for export)."""
RANGE_AUTO, RANGE_FIXED = "auto (0.5 .. view max)", "fixed"
"""Options of the relevancy range control: LERF's per-view normalisation, or the fixed range slider."""


def tiny_encoder_note(core: RenderCore) -> str:
    """A visible warning for a field whose text encoder is the random ``test-tiny`` CLIP ('' otherwise)."""
    ls = core.language
    if ls is None or not ls.clip_name.startswith("test-tiny"):
        return ""
    names = core.label_names()
    examples = f": {', '.join(names[:40])}{' ...' if len(names) > 40 else ''}" if names else ""
    return ("**Note:** this scene's text encoder is `test-tiny` (random, offline): only exact label "
            f"names mean anything{examples}")


class ClientPanel:
    """GUI handles, submitted query and render loop of one connected client."""

    def __init__(self, client: Any, core: RenderCore, config: ViewerConfig) -> None:
        self.client, self.core, self.config = client, core, config
        self.submitted = ""  # the query in effect (the box may hold unsubmitted text)
        self.submitted_negatives: tuple[str, ...] = ()
        self._selection: Any = None  # this tab's Selection (never shared, gone on reload)
        self.recent_queries: list[str] = []  # submitted queries, most recent first (scored at a clicked point)
        self._build(client.gui)
        self.loop = ClientLoop(client, self.frame, config, self.set_status, max_size_fn=self.max_size)
        # the click reads the frame the loop shows: the same camera at the same full size
        self.pointer = PointerPanel(client, core, client.gui, camera_fn=lambda: self.loop._camera(self.max_size()),
                                    request_fn=self.request, queries_fn=lambda: self.recent_queries)
        from langfield.viewer.campath import CameraPathControls

        self.campath = CameraPathControls(client.gui, client, core, request_fn=self.request, max_size_fn=self.max_size)

    # ------------------------------------------------------------------ GUI

    def _build(self, gui: Any) -> None:
        from langfield.query import DEFAULT_NEGATIVES

        core = self.core
        self.mode = gui.add_dropdown("Mode", core.modes, initial_value="rgb")
        sizes = sorted({*RESOLUTIONS, self.config.max_size})
        self.resolution = gui.add_dropdown("Resolution", [str(s) for s in sizes],
                                           initial_value=str(self.config.max_size),
                                           hint="long side in pixels of the frame once the camera stops")
        self.status = gui.add_markdown("")
        self.mode.on_update(lambda _: self.loop.refresh())
        self.resolution.on_update(lambda _: self.loop.refresh())
        self._build_cameras(gui)
        if not core.has_language:
            gui.add_markdown(f"*{core.language_note}*")
            return
        with gui.add_folder("Language"):
            note = tiny_encoder_note(core)
            if note:
                gui.add_markdown(note)
            # multiline: the one text box whose value sees Enter (a newline), which submits
            self.query = gui.add_text("Query", "", multiline=True, hint="type, then Enter or Search")
            self.negatives = gui.add_text("Negatives", ", ".join(DEFAULT_NEGATIVES), multiline=True)
            search = gui.add_button("Search")
            names = core.level_names
            self.level = gui.add_dropdown("Level", ["auto", *[f"{i}: {n}" for i, n in enumerate(names)]])
            self.method = gui.add_dropdown("Relevancy", list(METHOD_LABELS.values()),
                                           initial_value=METHOD_LABELS[DEFAULT_METHOD])
            self.colormap = gui.add_dropdown("Colormap", COLORMAPS, initial_value=COLORMAPS[0])
            self.range_mode = gui.add_dropdown("Range", [RANGE_AUTO, RANGE_FIXED], initial_value=RANGE_AUTO,
                                               hint="auto: 0.5 (beats the negatives) .. the view's maximum")
            self.range = gui.add_multi_slider("Fixed range", 0.0, 1.0, 0.01, (0.5, 1.0), disabled=True,
                                              hint="raw relevancy mapped to the colormap's ends, in every view")
        with gui.add_folder("3D selection"):
            self.threshold = gui.add_slider("Select threshold", 0.0, 1.0, 0.01, DEFAULT_THRESHOLD,
                                            hint="as `langfield select --threshold`")
            select = gui.add_button("Select 3D")
            self.selection_view = gui.add_dropdown("Show selection", SELECTION_VIEWS, initial_value=SELECTION_VIEWS[0])
            self.clear = gui.add_button("Clear selection", disabled=True)
            self.export = gui.add_button("Export PLY", disabled=True)
            self.selection_status = gui.add_markdown("")
        self.submitted_negatives = self._parse_negatives()
        for handle in (self.query, self.negatives):
            handle.on_update(lambda event, h=handle: self._typed(h))
        search.on_click(lambda _: self.submit())
        self.level.on_update(lambda _: self.loop.refresh())
        self.method.on_update(lambda _: self.loop.refresh())
        self.colormap.on_update(lambda _: self.loop.refresh())
        self.range.on_update(lambda _: self.loop.refresh())
        self.range_mode.on_update(lambda _: self._range_mode_changed())
        self.selection_view.on_update(lambda _: self.loop.refresh())
        select.on_click(lambda _: self.select())
        self.clear.on_click(lambda _: self.clear_selection())
        self.export.on_click(lambda _: self.export_selection())

    def _build_cameras(self, gui: Any) -> None:
        """Training-camera frustums of this tab (click one to jump there) and their show/hide toggle."""
        from langfield.viewer.frustums import add_training_frustums

        scene = self.core.scene
        self.train_cameras = [(c.name, ViewerCamera.from_scene_camera(c))
                              for c in (scene.cameras_of("train") or scene.cameras)]
        with gui.add_folder("Training cameras"):
            self.show_cameras = gui.add_checkbox("Show training cameras", True,
                                                 hint="click a frustum to view the scene from that camera")
            self.camera_status = gui.add_markdown(f"{len(self.train_cameras)} cameras · click one to jump there")
        self.frustums = add_training_frustums(self.client, [c for _, c in self.train_cameras],
                                              self.core.scene_extent(), self.jump_to_camera)
        self.show_cameras.on_update(lambda _: self._show_cameras(bool(self.show_cameras.value)))

    def _show_cameras(self, visible: bool) -> None:
        for handle in self.frustums:
            handle.visible = visible

    def jump_to_camera(self, index: int) -> None:
        """Move this tab's camera onto training camera ``index`` (a frustum click)."""
        from langfield.viewer.frustums import jump_to

        name, camera = self.train_cameras[index]
        jump_to(self.client, camera)
        self.camera_status.content = f"at training camera {index}: `{name}`"
        self.loop.camera_moved()  # the browser echoes the move too; render without waiting for it

    def _parse_negatives(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.negatives.value.replace("\n", ",").split(",") if t.strip())

    def _typed(self, handle: Any) -> None:
        """A keystroke: Enter (a newline in the value) submits; anything else only marks the query pending."""
        value = handle.value
        if "\n" in value:
            if handle is self.query:
                self.submitted = " ".join(value.split())  # before the box is cleaned (which calls back here)
                handle.value = self.submitted
            else:
                handle.value = value.replace("\n", "")
            self.submit()
        elif handle is self.query and value.strip() != self.submitted:
            self.set_status("query not applied yet: press Enter or Search")

    def submit(self) -> None:
        """Apply the query box and negatives (Enter / Search) and re-render."""
        self.submitted = " ".join(self.query.value.split())
        self.submitted_negatives = self._parse_negatives()
        self.recent_queries = remember_query(self.recent_queries, self.submitted)
        if self.submitted and self.mode.value not in ("relevancy", "features"):
            self.mode.value = "relevancy"  # a query asks to see its relevancy (this re-renders too)
        self.loop.refresh()

    def _range_mode_changed(self) -> None:
        self.range.disabled = self.range_mode.value != RANGE_FIXED
        self.loop.refresh()

    def max_size(self) -> int:
        return int(self.resolution.value)

    def set_status(self, text: str) -> None:
        self.status.content = text

    # ------------------------------------------------------------------ frames

    def request(self) -> RenderRequest:
        """This client's GUI state as a RenderRequest (the submitted query, not the box's text)."""
        if not self.core.has_language:
            return RenderRequest(mode=self.mode.value)
        level = None if self.level.value == "auto" else int(self.level.value.split(":")[0])
        method = next(k for k, v in METHOD_LABELS.items() if v == self.method.value)
        lo, hi = (float(x) for x in self.range.value)
        fixed = self.range_mode.value == RANGE_FIXED and lo < hi
        style = RelevancyStyle(colormap=self.colormap.value, range=(lo, hi) if fixed else None)
        view = self.selection_view.value
        shown = None if self._selection is None or view == "hidden" else self._selection.highlight
        return RenderRequest(mode=self.mode.value, query=self.submitted, negatives=self.submitted_negatives,
                             level=level, method=method, style=style, selection=shown,
                             selection_only=view == "selection only")

    def frame(self, camera: ViewerCamera) -> RenderResult:
        return self.core.render(camera, self.request())

    def stop(self) -> None:
        self.campath.stop()  # a running video render ends with the tab
        self.loop.stop()

    # ------------------------------------------------------------------ 3D selection

    def select(self) -> None:
        """Select 3D: the Gaussians ``langfield select`` would pick, drawn as splats in this tab's frames."""
        from langfield.viewer.selection import Selector

        req = self.request()
        self.selection_status.content = "⏳ selecting ..."
        try:
            sel = Selector(self.core).select(req.query, req.negatives, req.level, float(self.threshold.value))
        except LangfieldError as e:
            self.selection_status.content = f"error: {e}"
            return
        self._selection = sel
        self.export.disabled = sel.count == 0
        self.clear.disabled = False
        if self.selection_view.value == "hidden":  # a new selection asks to be seen
            self.selection_view.value = SELECTION_VIEWS[0]
        level = self.core.level_names[sel.level] if sel.level < len(self.core.level_names) else sel.level
        self.selection_status.content = (f"**{sel.count:,}** of {self.core.field.num_gaussians:,} Gaussians "
                                         f"for “{sel.query}” · level {sel.level} ({level}) · "
                                         f"threshold {sel.threshold:.2f}")
        self.loop.refresh()

    def clear_selection(self) -> None:
        """Clear selection: forget this tab's selection and show the plain frame again."""
        had = self._selection is not None
        self._selection = None
        self.export.disabled = self.clear.disabled = True
        self.selection_status.content = ""
        if had:
            self.loop.refresh()

    def export_selection(self) -> Optional[str]:
        from langfield.viewer.selection import Selector

        if self._selection is None:
            return None
        try:
            path = Selector(self.core).export(self._selection, self.config.export_dir)
        except LangfieldError as e:
            self.selection_status.content = f"error: {e}"
            return None
        self.selection_status.content = f"wrote `{path}`"
        return str(path)
