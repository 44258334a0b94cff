"""The ``langfield`` command: reconstruct, render, eval, demo, info, query, select, weights, eval-queries, view.

Each subcommand is a dataclass whose field docstrings become ``--help``.
User errors (``LangfieldError``) print one ``error: ...`` line on stderr and
exit with code 2; ``--debug`` (or ``LANGFIELD_DEBUG=1``) shows the traceback.
Ctrl-C during training keeps a checkpoint and exits with 130.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence, Union

import tyro

from langfield.cli_language import EvalQueries, Query, Select, Weights
from langfield.types import DataError, LangfieldError
from langfield.viewer.command import ViewCommand

Backend = Literal["auto", "torch", "cpu", "cuda"]


def _pos(metavar: str):
    """A positional Path argument shown as ``metavar`` in --help."""
    return Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar=metavar)]


DataArg = _pos("DATA")
SceneArg = _pos("SCENE")

# Demo defaults: small enough to finish in a few minutes on a laptop CPU.
DEMO_WIDTH, DEMO_HEIGHT, DEMO_ITERATIONS, DEMO_MAX_GAUSSIANS = 160, 120, 800, 50_000


def _train_config(**kw):
    from langfield.train.config import TrainConfig

    try:
        return TrainConfig(**kw)
    except ValueError as e:
        raise LangfieldError(f"bad option: {e}") from None


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


@dataclass
class Reconstruct:
    """Reconstruct a Gaussian scene from a posed dataset (nerfstudio, COLMAP or LLFF)."""

    data: DataArg
    """Dataset: a transforms.json or a directory (nerfstudio, COLMAP sparse model, LLFF poses_bounds.npy)."""
    out: Path
    """Scene directory to write (config.json, point_cloud.ply, cameras.json, checkpoints/, eval/)."""
    iterations: Optional[int] = None
    """Optimisation steps (default 7000; with --resume: keep the checkpoint's)."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    downscale: int = 1
    """Load images downscaled by this integer factor."""
    resume: bool = False
    """Continue the run in OUT from its newest checkpoint."""
    overwrite: bool = False
    """Replace an existing OUT (the old scene is removed only once the new one is complete)."""
    eval_every: int = 8
    """Hold out every N-th image for evaluation unless the dataset defines a split (0 = none)."""
    images: Optional[str] = None
    """Image sub-folder to use (e.g. images_8 for LLFF)."""
    seed: int = 0
    """Random seed."""
    checkpoint_every: int = 1000
    """Write a checkpoint every N steps (the last 2 are kept)."""
    max_gaussians: Optional[int] = None
    """Stop densification from growing beyond this many Gaussians (bounds memory and time); default
    0.9 per pixel of one training image (TrainConfig.gaussians_per_pixel)."""
    absgrad: bool = False
    """AbsGS densification: grow Gaussians by the sum over pixels of |screen-space gradient| (means2d.absgrad,
    threshold 0.0008) instead of the mean gradient (0.0002)."""
    quiet: bool = False
    """No progress bar."""
    features: Literal["auto", "labels", "sam-clip", "dense", "none"] = "auto"
    """Language features: labels | sam-clip | dense | none; auto = labels when the dataset has labels.json, else
    sam-clip (auto skips the language stage with a warning when the default weights are missing)."""
    clip: str = "ViT-B-16:laion2b_s34b_b88k"
    """CLIP model: open_clip MODEL[:TAG], a checkpoint path, or test-tiny (random; see `langfield weights`)."""
    sam: Optional[str] = None
    """SAM checkpoint for sam-clip: vit_h | vit_l | vit_b | PATH | test-tiny (default vit_h)."""
    latent_iterations: int = 2000
    """Language latent optimisation steps (after geometry, geometry frozen; sequential schedule)."""
    language_schedule: Literal["sequential", "joint"] = "sequential"
    """sequential: geometry first, then latents with geometry frozen; joint: latents trained with the geometry
    from step 0 (one render pass, the latent loss also shapes the geometry)."""
    joint_weight: float = 1.0
    """Joint schedule: weight (> 0) of the latent loss relative to the RGB loss."""
    latent_dim: int = 3
    """Codec latent width per level."""
    codec_steps: int = 3000
    """Optimisation steps of the per-scene codec."""

    def run(self) -> int:
        from langfield.train.reconstruct import reconstruct

        language = _language_config(self.features, self.clip, self.sam, self.latent_iterations, self.latent_dim,
                                    self.codec_steps, schedule=self.language_schedule, joint_weight=self.joint_weight)
        if self.resume and self.overwrite:
            raise LangfieldError("--resume and --overwrite exclude each other")
        cfg = _train_config(
            iterations=self.iterations or 7000, backend=self.backend, downscale=self.downscale,
            eval_every=self.eval_every, images=self.images, seed=self.seed, checkpoint_every=self.checkpoint_every,
        )
        cfg.strategy.max_gaussians = self.max_gaussians
        if self.absgrad:
            from langfield.gaussians.strategy import ABSGRAD_GROW_GRAD2D

            cfg.strategy.absgrad = True
            cfg.strategy.grow_grad2d = ABSGRAD_GROW_GRAD2D
        result = reconstruct(self.data, self.out, cfg, resume=self.resume, overwrite=self.overwrite,
                             iterations=self.iterations, progress=not self.quiet,
                             language=None if self.resume and self.features == "auto" else language)
        assert result is not None
        _print_summary(result)
        return 0


def _language_config(features: str, clip: str, sam: Optional[str], iterations: int, latent_dim: int,
                     codec_steps: int = 3000, *, schedule: str = "sequential", joint_weight: float = 1.0):
    """The language stage of ``reconstruct`` (None for --features none)."""
    from langfield.train.language import LanguageConfig

    if features == "none":
        return None
    # An unspecified choice (no --features, --clip or --sam) must not make a plain `reconstruct`
    # fail for want of optional weights; anything the user named explicitly fails loudly.
    return LanguageConfig(features=features, clip=clip, sam=sam, iterations=iterations, latent_dim=latent_dim,  # type: ignore[arg-type]
                          codec_steps=codec_steps, schedule=schedule, joint_weight=joint_weight,  # type: ignore[arg-type]
                          skip_if_unavailable=features == "auto" and clip == LanguageConfig.clip and sam is None)


def _print_summary(result) -> None:
    from langfield.scene import EVAL_DIR, PLY_FILE

    r = result.report
    psnr = r.get("mean_psnr")
    print(f"scene:         {result.scene_dir}")
    print(f"gaussians:     {result.num_gaussians}")
    print(f"{r.get('split', 'eval')} PSNR:     {psnr:.2f} dB  SSIM {r.get('mean_ssim', 0):.4f}" if psnr is not None else "PSNR: n/a")
    print(f"PLY:           {result.scene_dir / PLY_FILE}")
    print(f"report:        {result.scene_dir / EVAL_DIR / 'report.json'}")
    print(f"contact sheet: {result.scene_dir / EVAL_DIR / 'contact_sheet.png'}")


@dataclass
class Render:
    """Render a scene: RGB PNGs, float32 depth .npy and colourised depth PNGs."""

    scene: SceneArg
    """Scene directory written by `langfield reconstruct`."""
    out: Path
    """Output directory (rgb/, depth/, orbit/)."""
    cameras: Optional[Path] = None
    """nerfstudio-style transforms.json of the cameras to render (default: the scene's own cameras)."""
    orbit: int = 0
    """Also render this many turntable frames around the scene centre (+ orbit.mp4 or .gif)."""
    backend: Backend = "auto"
    """Rasterizer backend."""

    def run(self) -> int:
        from langfield.eval.render_files import orbit_cameras, render_cameras, write_animation
        from langfield.scene import load_scene, read_transforms_cameras

        scene = load_scene(self.scene)
        background = scene.config.get("train", {}).get("background", "black")
        if self.out.exists() and not self.out.is_dir():
            raise LangfieldError(f"{self.out}: exists and is not a directory")
        n = 0
        if self.cameras is not None or self.orbit == 0:
            cams = read_transforms_cameras(self.cameras) if self.cameras is not None else scene.cameras
            if not cams:
                raise DataError(f"{self.scene}: no cameras to render (pass --cameras or --orbit)")
            written = render_cameras(scene, cams, self.out, backend=self.backend, background=background)
            n += len(written)
            print(f"rendered {len(written)} views into {self.out / 'rgb'} (depth in {self.out / 'depth'})")
        if self.orbit > 0:
            frames = render_cameras(scene, orbit_cameras(scene, self.orbit), self.out / "orbit",
                                    backend=self.backend, background=background, subdir_rgb="rgb")
            anim = write_animation(frames, self.out / "orbit")
            n += len(frames)
            print(f"rendered {len(frames)} orbit frames into {self.out / 'orbit' / 'rgb'}" + (f"; animation {anim}" if anim else ""))
        return 0


@dataclass
class Eval:
    """Evaluate a scene on its held-out views: prints metrics JSON and writes SCENE/eval/."""

    scene: SceneArg
    """Scene directory."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    data: Optional[Path] = None
    """Dataset to evaluate against (default: the one the scene was trained on)."""

    def run(self) -> int:
        from langfield.eval.report import evaluate_scene

        report = evaluate_scene(self.scene, backend=self.backend, data=self.data)
        _print_json({k: v for k, v in report.items() if k != "views"} | {"views": report["views"]})
        return 0


@dataclass
class Demo:
    """Generate a small synthetic scene (OUT/data) and reconstruct it (OUT/scene), end to end."""

    out: Path
    """Demo directory."""
    iterations: int = DEMO_ITERATIONS
    """Optimisation steps."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    width: int = DEMO_WIDTH
    """Synthetic image width."""
    height: int = DEMO_HEIGHT
    """Synthetic image height."""
    max_gaussians: int = DEMO_MAX_GAUSSIANS
    """Cap on the Gaussian count (keeps the demo quick on a CPU)."""
    overwrite: bool = False
    """Replace an existing OUT/scene."""
    seed: int = 0
    """Random seed (scene generation and training)."""
    quiet: bool = False
    """No progress bar."""
    language: bool = True
    """Give the scene a language field (its label masks lifted with the offline test-tiny CLIP, trained
    jointly with the geometry) and answer two sample queries into OUT/queries; --no-language skips it."""

    def run(self) -> int:
        from langfield.cli_language import DEMO_QUERIES, Query, run_query
        from langfield.synthetic import generate_scene
        from langfield.train.reconstruct import reconstruct

        data = self.out / "data"
        if not (data / "transforms.json").is_file():
            print(f"generating synthetic scene in {data} ...")
            generate_scene(data, seed=self.seed, width=self.width, height=self.height)
        cfg = _train_config(iterations=self.iterations, backend=self.backend, seed=self.seed,
                            checkpoint_every=max(500, self.iterations // 4))
        cfg.strategy.max_gaussians = self.max_gaussians
        # test-tiny needs no download; only exact label names are meaningful with it (it says so).
        language = (_language_config("labels", "test-tiny", None, 2000, 3, schedule="joint", joint_weight=1.0)
                    if self.language else None)
        result = reconstruct(data, self.out / "scene", cfg, language=language, overwrite=self.overwrite,
                             progress=not self.quiet)
        assert result is not None
        _print_summary(result)
        scene = result.scene_dir
        print(f"next: langfield render {scene} --out {self.out / 'renders'} --orbit 36")
        if self.language:
            queries = self.out / "queries"
            run_query(Query(scene=scene, texts=DEMO_QUERIES, out=queries, backend=self.backend))
            print(f"queries:       {queries / 'manifest.json'} (overlays in {queries / 'overlay'})")
            print(f'next: langfield query {scene} "lamp shade" --out {self.out / "lamp"}   '
                  f"(label names: {data / 'labels.json'})")
            print(f"      langfield eval-queries {scene}      langfield view {scene}")
        return 0


@dataclass
class Info:
    """Summarise a scene: Gaussian count, bounds, SH degree, latent width, cameras."""

    scene: SceneArg
    """Scene directory."""

    def run(self) -> int:
        from langfield.gaussians.params import sh_degree_of
        from langfield.scene import load_scene

        scene = load_scene(self.scene)
        means = scene.params["means"].detach()
        splits: dict[str, int] = {}
        for c in scene.cameras:
            splits[c.split] = splits.get(c.split, 0) + 1
        sizes = sorted({f"{c.width}x{c.height}" for c in scene.cameras})
        _print_json({
            "scene": str(scene.root),
            "num_gaussians": scene.num_gaussians,
            "bounds_min": means.min(dim=0).values.tolist() if len(means) else None,
            "bounds_max": means.max(dim=0).values.tolist() if len(means) else None,
            "sh_degree": sh_degree_of(scene.params),
            "latent_dim": int(scene.params["latents"].shape[1]) if "latents" in scene.params else 0,
            "cameras": splits,
            "image_sizes": sizes,
            "iterations": scene.config.get("iterations"),
            "data": scene.config.get("data"),
            "capture_kind": scene.config.get("capture_kind"),
        })
        return 0


Command = Union[
    Annotated[Reconstruct, tyro.conf.subcommand("reconstruct")],
    Annotated[Render, tyro.conf.subcommand("render")],
    Annotated[Eval, tyro.conf.subcommand("eval")],
    Annotated[Demo, tyro.conf.subcommand("demo")],
    Annotated[Info, tyro.conf.subcommand("info")],
    Annotated[Query, tyro.conf.subcommand("query")],
    Annotated[Select, tyro.conf.subcommand("select")],
    Annotated[Weights, tyro.conf.subcommand("weights")],
    Annotated[EvalQueries, tyro.conf.subcommand("eval-queries")],
    Annotated[ViewCommand, tyro.conf.subcommand("view")],
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``langfield`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is handled here rather than by tyro so it works in any position.
    debug = "--debug" in args or os.environ.get("LANGFIELD_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    description = ("langfield: Gaussian-splatting scenes from posed captures. "
                   "Add --debug (or LANGFIELD_DEBUG=1) to see tracebacks of errors.")
    cmd = tyro.cli(Command, args=args, prog="langfield", description=description)  # type: ignore[arg-type]
    try:
        return int(cmd.run() or 0)
    except LangfieldError as e:
        if debug:
            raise
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: the latest checkpoint is kept; continue with `langfield reconstruct ... --resume`",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
