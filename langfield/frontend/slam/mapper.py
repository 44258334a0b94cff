"""The growing Gaussian map: keyframes, Gaussians added where the map is missing, windowed mapping, pruning.

Maps are SH degree 0 (a colour per Gaussian): view-dependent colour needs views from many
directions, which a stream has not seen yet when it maps, and degree 0 renders without SH.
Each keyframe adds one Gaussian per ``add_stride``-th pixel where the map is missing (rendered
alpha low, or the measured surface in front of the rendered one), sized by the pixel footprint
at its depth.  Mapping steps render one keyframe each, cycling over the window of the newest
keyframes plus a few random older ones, with colour + depth L1 (``train.losses``) and one Adam
per parameter (so ``gaussians.ops`` can prune rows and keep the moments of the rest).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.tracker import FrozenMap, map_colors, render_view
from langfield.gaussians.init import backproject_depth
from langfield.gaussians.ops import remove
from langfield.gaussians.params import activate, create_params, rgb_to_sh0
from langfield.io import atomic_write_with
from langfield.train.losses import masked_depth_l1, photometric_loss
from langfield.types import View

# A new Gaussian's standard deviation, in pixel footprints at its depth (neighbours at add_stride
# pixels overlap enough to close the surface, not so much that they blur it).
FOOTPRINT_SIGMA = 0.6
# Largest stored depth unit: a keyframe's depth is quantised to uint16 over [0, its largest depth].
_DEPTH_UNITS = 65535


class Keyframe:
    """A frame kept for mapping: its tracked pose and its pixels at the mapping resolution, stored compactly.

    The pixels live as uint8 RGB and uint16 depth (``depth_step`` metres per unit: the keyframe's largest
    depth over 65535, so the rounding error is below 1e-5 of the depth range), 5 bytes a pixel instead of
    the float View's 16.  ``view`` decodes them (kept decoded while the keyframe is in memory, so the
    odometry's pyramid cache sees one View per keyframe).  ``spill`` writes them to a file and drops them
    from memory; ``view`` then reads the file back (bit-identical to the View before the spill).
    """

    def __init__(self, index: int, name: str, timestamp: float, view: View) -> None:
        if view.rgb is None or view.depth is None:
            raise ValueError(f"keyframe {name!r} needs colour and depth")
        self.index = index
        """Position of the frame in the (strided) sequence."""
        self.name = name
        """Frame name as the sequence spells it."""
        self.timestamp = timestamp
        """Capture time, seconds."""
        self.camera = View(view.name, view.viewmat.detach().float().clone(), view.K.detach().float().clone(),
                           int(view.width), int(view.height))
        """The tracked pose and intrinsics, no pixels (what a snapshot's camera list needs)."""
        depth = torch.nan_to_num(view.depth.detach()[..., 0].float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
        top = float(depth.max()) if depth.numel() else 0.0
        self.depth_step = max(top, 1e-6) / _DEPTH_UNITS
        """Metres per unit of the stored uint16 depth."""
        units = torch.round(depth / self.depth_step).clamp_(0, _DEPTH_UNITS)
        units = torch.where(depth > 0, units.clamp_min(1), units)  # a tiny valid depth stays valid
        self._rgb: Optional[np.ndarray] = (view.rgb.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        self._depth: Optional[np.ndarray] = units.to(torch.int32).numpy().astype(np.uint16)
        self._view: Optional[View] = None
        self._file: Optional[Path] = None

    @property
    def spilled(self) -> bool:
        """True once the pixels live only in the spill file."""
        return self._rgb is None

    @property
    def nbytes(self) -> int:
        """Bytes of pixels this keyframe holds in memory (compact arrays plus the decoded View while cached)."""
        n = 0 if self._rgb is None or self._depth is None else self._rgb.nbytes + self._depth.nbytes
        if self._view is not None:
            n += sum(t.numel() * t.element_size() for t in (self._view.rgb, self._view.depth) if t is not None)
        return n

    def _decode(self, rgb: np.ndarray, depth: np.ndarray) -> View:
        c = self.camera
        return View(c.name, c.viewmat, c.K, c.width, c.height,
                    rgb=torch.from_numpy(rgb.astype(np.float32)).div_(255.0),
                    depth=torch.from_numpy(depth.astype(np.float32)).mul_(self.depth_step)[..., None])

    @property
    def view(self) -> View:
        """Posed pixels at 1/map_downscale resolution (viewmat = the tracked pose); read back from the spill file
        (not kept: a spilled keyframe stays out of memory) once spilled."""
        if self._view is not None:
            return self._view
        if self._rgb is not None and self._depth is not None:
            self._view = self._decode(self._rgb, self._depth)
            return self._view
        assert self._file is not None
        with np.load(self._file) as z:
            return self._decode(z["rgb"], z["depth"])

    def spill(self, directory: Path) -> None:
        """Write the pixels to ``directory`` (atomically) and drop them, and the decoded View, from memory."""
        if self.spilled:
            return
        assert self._rgb is not None and self._depth is not None
        rgb, depth = self._rgb, self._depth
        path = Path(directory) / f"keyframe_{self.index:07d}.npz"
        atomic_write_with(path, lambda f: np.savez(f, rgb=rgb, depth=depth))
        self._file, self._rgb, self._depth, self._view = path, None, None, None


def _empty_params() -> torch.nn.ParameterDict:
    z = torch.zeros
    return create_params(z(0, 3), z(0, 3), z(0, 4), z(0), z(0, 1, 3), z(0, 0, 3))


@torch.no_grad()
def append_gaussians(params: torch.nn.ParameterDict, optimizers: dict[str, torch.optim.Optimizer],
                     new: dict[str, torch.Tensor]) -> int:
    """Append rows ``new[key]`` to every parameter; optimizer moments of the new rows start at zero."""
    n_new = int(new["means"].shape[0])
    if n_new == 0:
        return 0
    for key in list(params.keys()):
        old = params[key]
        n_old = old.shape[0]
        p = torch.nn.Parameter(torch.cat([old.detach(), new[key].to(old.dtype)]).contiguous())
        params[key] = p
        opt = optimizers[key]
        group = opt.param_groups[0]
        slot = opt.state.pop(old, {})
        for name, value in slot.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n_old:
                slot[name] = torch.cat([value, value.new_zeros((n_new, *value.shape[1:]))])
        group["params"] = [p]
        if slot:
            opt.state[p] = slot
    return n_new


class Mapper:
    """Owns the Gaussians, their optimizers and the keyframes."""

    def __init__(self, cfg: SlamConfig) -> None:
        self.cfg = cfg
        self.params = _empty_params()
        lrs = {"means": cfg.lr_means, "scales": cfg.lr_scales, "quats": cfg.lr_quats,
               "opacities": cfg.lr_opacities, "sh0": cfg.lr_colors, "shN": cfg.lr_colors}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            k: torch.optim.Adam([{"params": [self.params[k]], "lr": lrs[k]}], eps=1e-15) for k in self.params.keys()
        }
        self.keyframes: list[Keyframe] = []
        self.iterations = 0
        """Mapping steps taken so far."""
        self.rows: dict[str, torch.Tensor] = {}
        """Per-Gaussian tensors (first dim N) that follow every add (zero rows) and prune (the online
        language accumulators of ``language.py``)."""
        self._gen = torch.Generator().manual_seed(cfg.seed)
        self._spill_dir: Optional[tempfile.TemporaryDirectory] = None
        """Where keyframes older than ``keyframes_in_memory`` live (created at the first spill, removed by ``close``
        or when the mapper is collected)."""

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def frozen(self) -> FrozenMap:
        return FrozenMap.of(self.params)

    # ------------------------------------------------------------------ growth

    @torch.no_grad()
    def missing_mask(self, view: View) -> torch.Tensor:
        """[H, W] bool: valid-depth pixels of ``view`` the map does not explain yet."""
        depth = view.depth[..., 0]
        valid = depth > 0
        if self.num_gaussians == 0:
            return valid
        out = render_view(self.frozen(), view.viewmat, view, self.cfg.map_backend)
        alpha = out.alpha[0, ..., 0]
        rendered = out.depth[0, ..., 0]
        in_front = rendered > depth * (1.0 + self.cfg.add_depth_error)  # the measured surface hides the map's
        return valid & ((alpha < self.cfg.add_alpha_max) | in_front)

    @torch.no_grad()
    def add_from(self, view: View) -> int:
        """Add Gaussians at ``view``'s missing pixels (every ``add_stride``-th); returns how many."""
        mask = self.missing_mask(view)
        depth = torch.where(mask, view.depth[..., 0], torch.zeros_like(view.depth[..., 0]))
        masked = View(view.name, view.viewmat, view.K, view.width, view.height, rgb=view.rgb, depth=depth[..., None])
        s = self.cfg.add_stride
        points, colors = backproject_depth(masked, stride=s)
        if points.shape[0] == 0:
            return 0
        z = depth[::s, ::s]
        z = z[torch.isfinite(z) & (z > 0)]  # the same pixels, in the same row-major order as backproject_depth
        focal = 0.5 * float(view.K[0, 0] + view.K[1, 1])
        sigma = (z / focal * s * FOOTPRINT_SIGMA).clamp_min(1e-6)
        n = points.shape[0]
        p = self.cfg.init_opacity
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        new = {
            "means": points,
            "scales": torch.log(sigma)[:, None].expand(n, 3),
            "quats": quats,
            "opacities": torch.full((n,), math.log(p / (1.0 - p))),
            "sh0": rgb_to_sh0(colors if colors is not None else torch.full_like(points, 0.5))[:, None, :],
            "shN": torch.zeros(n, 0, 3),
        }
        added = append_gaussians(self.params, self.optimizers, new)
        for key, rows in self.rows.items():
            self.rows[key] = torch.cat([rows, rows.new_zeros((added, *rows.shape[1:]))])
        return added

    def add_keyframe(self, kf: Keyframe) -> int:
        """Keep ``kf`` for mapping and grow the map where it sees nothing yet; returns Gaussians added.

        The keyframe that falls out of the newest ``keyframes_in_memory`` is spilled to disk, so the pixels in
        memory stay bounded however long the sequence is.
        """
        self.keyframes.append(kf)
        added = self.add_from(kf.view)
        keep = self.cfg.keyframes_in_memory
        if keep and len(self.keyframes) > keep:
            if self._spill_dir is None:
                self._spill_dir = tempfile.TemporaryDirectory(prefix="langfield-slam-keyframes-")
            for old in self.keyframes[-keep - 1::-1]:  # newest first: the rest were spilled before
                if old.spilled:
                    break
                old.spill(Path(self._spill_dir.name))
        return added

    @property
    def keyframe_bytes(self) -> int:
        """Bytes of keyframe pixels held in memory (bounded by ``keyframes_in_memory``)."""
        return sum(kf.nbytes for kf in self.keyframes)

    def close(self) -> None:
        """Remove the spill folder (spilled keyframes' ``view`` fails after this)."""
        if self._spill_dir is not None:
            self._spill_dir.cleanup()
            self._spill_dir = None

    # ------------------------------------------------------------------ optimisation

    def window(self) -> list[Keyframe]:
        """The newest ``map_window`` keyframes plus ``map_random`` random older ones."""
        recent = self.keyframes[-self.cfg.map_window:]
        older = self.keyframes[: -self.cfg.map_window]
        if older and self.cfg.map_random:
            pick = torch.randperm(len(older), generator=self._gen)[: self.cfg.map_random].tolist()
            recent = recent + [older[i] for i in sorted(pick)]
        return recent

    def map(self, iterations: int) -> Optional[float]:
        """``iterations`` mapping steps over the keyframe window, then opacity pruning; returns the last loss."""
        if iterations <= 0 or not self.keyframes or self.num_gaussians == 0:
            return None
        views = [kf.view for kf in self.window()]  # read once per round (older keyframes come from disk)
        last = None
        for it in range(iterations):
            view = views[it % len(views)]  # the newest keyframe first: it is the one least fitted
            g = activate(self.params)
            out = render_view(g, view.viewmat, view, self.cfg.map_backend, colors=map_colors(self.params))
            loss = photometric_loss(out.rgb[0], view.rgb, self.cfg.map_ssim_lambda)
            if self.cfg.map_depth_weight > 0:
                loss = loss + self.cfg.map_depth_weight * masked_depth_l1(out.depth[0], view.depth)
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in self.optimizers.values():
                opt.step()
            last = float(loss.detach())
            self.iterations += 1
        self.prune()
        return last

    @torch.no_grad()
    def prune(self) -> int:
        """Remove Gaussians whose opacity fell below ``prune_opacity``; returns how many."""
        low = torch.sigmoid(self.params["opacities"]) < self.cfg.prune_opacity
        if not bool(low.any()):
            return 0
        return remove(self.params, self.optimizers, self.rows, low)


def pose_distance(c2w_a: np.ndarray, c2w_b: np.ndarray) -> tuple[float, float]:
    """(translation metres, rotation degrees) between two camera-to-world poses."""
    rel = np.linalg.inv(c2w_a) @ c2w_b
    cos = np.clip((np.trace(rel[:3, :3]) - 1.0) * 0.5, -1.0, 1.0)
    return float(np.linalg.norm(rel[:3, 3])), float(np.degrees(np.arccos(cos)))
