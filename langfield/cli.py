"""The ``langfield`` command: reconstruct, poses, slam, lift, render, eval, demo, info, query, select, weights, eval-queries, view.

Each subcommand is a dataclass whose field docstrings become ``--help``.
User errors (``LangfieldError``) print one ``error: ...`` line on stderr and
exit with code 2; ``--debug`` (or ``LANGFIELD_DEBUG=1``) shows the traceback.
Ctrl-C during training keeps a checkpoint and exits with 130.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence, Union

import tyro

from langfield.cli_language import EvalQueries, Lift, Query, Select, Weights
from langfield.cli_slam import Slam
from langfield.features.weights import TINY
from langfield.frontend.frames import FrameConfig
from langfield.frontend.sfm import SfmConfig
from langfield.render.backend import Backend
from langfield.train.config import TRAIN_PRESETS, TrainConfig
from langfield.train.language import LanguageConfig
from langfield.train.live import DEFAULT_VIEW_EVERY
from langfield.types import DataError, LangfieldError
from langfield.viewer.command import ViewCommand
from langfield.viewer.config import DEFAULT_HOST, DEFAULT_PORT
from langfield.viewer.live import LiveScene


def _pos(metavar: str):
    """A positional Path argument shown as ``metavar`` in --help."""
    return Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar=metavar)]


DataArg = _pos("DATA")
SceneArg = _pos("SCENE")

# Demo defaults: small enough to finish in a few minutes on a laptop CPU.
DEMO_WIDTH, DEMO_HEIGHT, DEMO_ITERATIONS, DEMO_MAX_GAUSSIANS = 160, 120, 800, 50_000
DEMO_CHECKPOINT_EVERY = 500

Preset = Literal["default", "absgrad"]
"""Names of ``train.config.TRAIN_PRESETS`` (a test holds the two equal)."""


def _evaluation() -> dict:
    """The evaluation callbacks ``reconstruct`` takes (training never imports eval itself)."""
    from langfield.eval.report import evaluate_and_report, evaluate_views

    return {"evaluate": evaluate_and_report, "evaluate_views": evaluate_views}


def _print_json(obj) -> None:
    from langfield.io import dumps_json

    print(dumps_json(obj))  # strict: NaN/inf become null, so the output is always valid JSON


@dataclass
class Reconstruct:
    """Reconstruct a Gaussian scene from a video, a folder of unposed photos, or a posed dataset (nerfstudio,
    COLMAP or LLFF).  A video or unposed photos go through `langfield poses` first (frame selection, pycolmap
    structure from motion, undistortion; the posed dataset ends up in OUT/data)."""

    data: DataArg
    """Input: a video file (mp4/mov/avi/mkv...), a folder of photos without poses, or a posed dataset
    (a transforms.json or a directory: nerfstudio, COLMAP sparse model, LLFF poses_bounds.npy)."""
    out: Path
    """Scene directory to write (config.json, point_cloud.ply, cameras.json, checkpoints/, eval/; data/ for a video
    or photos)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training options (langfield.train.config.TrainConfig), with the learning rates (--train.lr.*) and the
    densification strategy (--train.strategy.*); common ones have short aliases (--iterations, --backend,
    --downscale, --eval-every, --images, --seed, --checkpoint-every, --max-gaussians).  With --resume the
    checkpoint's options are used; --iterations then sets a new total (default: the checkpoint's)."""
    language: LanguageConfig = field(default_factory=LanguageConfig)
    """Language stage options (langfield.train.language.LanguageConfig); --features none skips the stage, auto
    skips it with a warning when the default weights are missing.  With --resume and --features auto the
    language stage recorded in OUT/config.json is continued."""
    frames: FrameConfig = field(default_factory=FrameConfig)
    """Frame selection for a video or photo input (langfield.frontend.frames.FrameConfig); ignored for a posed
    dataset."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    """Structure from motion for a video or photo input (langfield.frontend.sfm.SfmConfig); ignored for a posed
    dataset."""
    preset: Preset = "default"
    """Starting values of the training options (options given on the command line override them): default, or
    absgrad = AbsGS densification, growing Gaussians by the sum over pixels of |screen-space gradient|
    (RenderOutput.absgrad) with the AbsGS threshold (gaussians.strategy.ABSGRAD_GROW_GRAD2D, 0.0008) instead of the
    mean gradient (0.0002)."""
    absgrad: bool = False
    """Short for --preset absgrad."""
    resume: bool = False
    """Continue the run in OUT from its newest checkpoint."""
    overwrite: bool = False
    """Replace an existing OUT (the old scene is removed only once the new one is complete)."""
    quiet: bool = False
    """No progress bar."""
    view: bool = False
    """Open the web viewer (needs viser; see `langfield view`) on the scene while it trains: from the first
    Gaussians, updated every --view-every steps (the language modes with the joint schedule; otherwise once the
    scene is written); when training ends it serves the written scene until Ctrl-C."""
    view_every: int = DEFAULT_VIEW_EVERY
    """--view: steps between the maps sent to the viewer (each one copy of the Gaussians)."""
    view_quit_when_done: bool = False
    """--view: exit once the scene is written instead of serving it until Ctrl-C."""
    host: str = DEFAULT_HOST
    """--view: interface to bind (localhost only by default; 0.0.0.0 exposes the scene to the network)."""
    port: int = DEFAULT_PORT
    """--view: TCP port (0 = any free port; a port in use is an error, exit code 2)."""
    iterations_given: tyro.conf.Suppress[bool] = False
    """Set by the parser, not an option: whether the command line named the iterations (with --resume, a new
    total; otherwise the checkpoint's is kept)."""

    def preset_name(self) -> str:
        """The chosen preset (--absgrad is --preset absgrad)."""
        if self.absgrad and self.preset not in ("default", "absgrad"):
            raise LangfieldError(f"--absgrad and --preset {self.preset} exclude each other")
        return "absgrad" if self.absgrad else self.preset

    def run(self) -> int:
        from langfield.train.reconstruct import reconstruct

        if self.resume and self.overwrite:
            raise LangfieldError("--resume and --overwrite exclude each other")
        features = self.language.features
        language = None if features == "none" or (self.resume and features == "auto") else self.language
        train, frontend, data = self.train, None, self.data
        kind = unposed_kind(self.data, self.train.images)
        if kind is not None and self.resume:
            data = None  # the scene continues on the dataset the front end made (recorded in its config.json)
        elif kind is not None:
            from langfield.frontend.input import scene_frontend

            source = _photo_folder(self.data, self.train.images) if kind == "photos" else self.data
            frontend = scene_frontend(source, self.frames, self.sfm, progress=not self.quiet)
            train = replace(train, images=None)  # the front end's dataset has its own images/
        live = self._live_view() if self.view else None
        try:
            result = reconstruct(data, self.out, train, resume=self.resume, overwrite=self.overwrite,
                                 iterations=self.train.iterations if self.resume and self.iterations_given else None,
                                 progress=not self.quiet, language=language, frontend=frontend, live=live,
                                 view_every=self.view_every, **_evaluation())
            assert result is not None
            _print_summary(result)
            if live is not None and not self.view_quit_when_done:
                print(f"viewer: {live.url} shows {result.scene_dir}  (Ctrl-C to stop)", flush=True)
                live.serve_until_interrupted()
        finally:
            if live is not None:
                live.close()
        return 0

    def _live_view(self) -> LiveScene:
        """The viewer of --view, checked before anything is trained (a taken port fails now, exit code 2)."""
        from langfield.viewer.config import ViewerConfig

        if self.view_every < 1:
            raise LangfieldError(f"--view-every must be >= 1, got {self.view_every}")
        try:
            config = ViewerConfig(host=self.host, port=self.port)
        except ValueError as e:
            raise LangfieldError(f"bad option: {e}") from None
        live = LiveScene(backend=self.train.backend, config=config, background=True,
                         note="the scene updates while training runs")
        live.preflight()
        return live


def unposed_kind(path: Path, images: Optional[str]) -> Optional[str]:
    from langfield.frontend.input import unposed_kind as kind

    return kind(path, images)


def _photo_folder(path: Path, images: Optional[str]) -> Path:
    """The folder holding the photos of an unposed input (``--images`` names a sub-folder)."""
    from langfield.sources.imagefolder import image_dir_of

    return image_dir_of(Path(path), images) or Path(path)


@dataclass
class Poses:
    """Estimate camera poses for a video or a folder of unposed photos and write a nerfstudio dataset
    (transforms.json, undistorted images/, sparse_pc.ply, colmap/sparse/0) that `reconstruct`, nerfstudio and
    gsplat read: frame selection, pycolmap SIFT + matching + mapping, undistortion to PINHOLE, normalisation."""

    input: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="INPUT")]
    """A video file or a folder of photos (JPEG/PNG; EXIF orientation applied; all of one size)."""
    out: Path
    """Dataset directory to write."""
    frames: FrameConfig = field(default_factory=FrameConfig)
    """Frame selection (langfield.frontend.frames.FrameConfig)."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    """Structure from motion (langfield.frontend.sfm.SfmConfig)."""
    work_dir: Optional[Path] = None
    """Where the frames, COLMAP database and stage markers live while the poses are made (default
    PARENT/.OUT.work); a rerun after a crash resumes from the last finished stage."""
    keep_work: bool = False
    """Keep the work directory after success."""
    overwrite: bool = False
    """Replace an existing OUT (only once the new dataset is complete)."""
    quiet: bool = False
    """No progress output."""

    def run(self) -> int:
        from langfield.frontend.poses import estimate_poses

        source = self.input
        if self.input.is_dir():
            source = _photo_folder(self.input, None)
        r = estimate_poses(source, self.out, frames=self.frames, sfm=self.sfm, work_dir=self.work_dir,
                           overwrite=self.overwrite, keep_work=self.keep_work, progress=not self.quiet)
        _print_json({
            "dataset": str(r.dataset), "kind": r.kind, "registered": r.registered, "total": r.total,
            "dropped": r.dropped, "frames": r.frames, "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
            "resumed_stages": r.resumed,
        })
        return 0


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
    """Output directory (rgb/, depth/, orbit/); with --camera-path the video file to write (.mp4)."""
    cameras: Optional[Path] = None
    """nerfstudio-style transforms.json of the cameras to render (default: the scene's own cameras)."""
    orbit: int = 0
    """Also render this many turntable frames around the scene centre (+ orbit.mp4 or .gif)."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    camera_path: Optional[Path] = None
    """Render this camera-path JSON (the viewer's "Save path", or a nerfstudio camera_path.json) to the video
    --out instead of PNG files."""
    mode: Literal["rgb", "depth", "features", "relevancy"] = "rgb"
    """--camera-path: what the video shows (as the viewer's Mode); relevancy needs --query."""
    query: str = ""
    """--camera-path --mode relevancy: the text whose relevancy heatmap is drawn over the RGB."""
    level: Optional[int] = None
    """--camera-path, language modes: feature level (0 = finest; default: per frame the best, as the viewer)."""
    quiet: bool = False
    """--camera-path: no progress bar."""

    def run(self) -> int:
        from langfield.cli_render import orbit_cameras, render_camera_path, render_cameras, write_animation
        from langfield.outputs import check_output
        from langfield.scene import load_scene, read_transforms_cameras

        check_output(self.out, [self.scene, self.cameras, self.camera_path])
        if self.camera_path is not None:
            if self.cameras is not None or self.orbit:
                raise LangfieldError("--camera-path renders a video: it does not combine with --cameras or --orbit")
            video = render_camera_path(self.scene, self.camera_path, self.out, backend=self.backend, mode=self.mode,
                                       query=self.query, level=self.level, progress=not self.quiet)
            print(f"wrote {video}")
            return 0
        scene = load_scene(self.scene)
        background = scene.settings.train.background
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
    trajectory: Optional[Path] = None
    """Ground-truth trajectory (TUM format: timestamp tx ty tz qx qy qz qw): print the ATE/RPE of the scene's
    SCENE/trajectory_tum.txt (written by `langfield slam`) after SE(3) alignment instead of the image metrics."""
    max_time_difference: float = 0.02
    """--trajectory: largest timestamp difference of an estimated and a ground-truth pose that pair, seconds."""
    align: Literal["se3", "sim3", "none"] = "se3"
    """--trajectory: alignment before the ATE (sim3 for monocular estimates without metric scale)."""

    def run(self) -> int:
        if self.trajectory is not None:
            return self._trajectory()
        from langfield.eval.report import evaluate_scene
        from langfield.outputs import check_output
        from langfield.scene import EVAL_DIR
        from langfield.scene_lock import scene_writer

        check_output(self.scene / EVAL_DIR, [self.data], flag="SCENE/eval")
        with scene_writer(self.scene):  # it rewrites SCENE/eval/: one writer per scene
            report = evaluate_scene(self.scene, backend=self.backend, data=self.data)
        _print_json({k: v for k, v in report.items() if k != "views"} | {"views": report["views"]})
        return 0

    def _trajectory(self) -> int:
        from langfield.scene import TRAJECTORY_FILE
        from langfield.trajectory import compare_trajectories, read_tum

        estimate = self.scene / TRAJECTORY_FILE
        if not estimate.is_file():
            raise DataError(f"{estimate}: no estimated trajectory (scenes made by `langfield slam` have one)")
        est_t, est = read_tum(estimate)
        gt_t, gt = read_tum(self.trajectory)
        errors = compare_trajectories(est_t, est, gt_t, gt, max_difference=self.max_time_difference, align=self.align)
        _print_json({"estimate": str(estimate), "ground_truth": str(self.trajectory), **errors.as_dict()})
        return 0


def _demo_train_config() -> TrainConfig:
    """The demo's training defaults: a short run and a Gaussian cap that keep it quick on a CPU."""
    cfg = TrainConfig(iterations=DEMO_ITERATIONS, checkpoint_every=DEMO_CHECKPOINT_EVERY)
    return replace(cfg, strategy=replace(cfg.strategy, max_gaussians=DEMO_MAX_GAUSSIANS))


@dataclass
class Demo:
    """Generate a small synthetic scene (OUT/data) and reconstruct it (OUT/scene), end to end."""

    out: Path
    """Demo directory."""
    train: TrainConfig = field(default_factory=_demo_train_config)
    """Training options, as for `reconstruct` (--iterations, --backend, --seed, --max-gaussians ...), with
    demo defaults small enough for a laptop CPU; the seed also generates the synthetic scene."""
    width: int = DEMO_WIDTH
    """Synthetic image width."""
    height: int = DEMO_HEIGHT
    """Synthetic image height."""
    overwrite: bool = False
    """Replace an existing OUT/scene."""
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
            generate_scene(data, seed=self.train.seed, width=self.width, height=self.height)
        # test-tiny needs no download; only exact label names are meaningful with it (it says so).
        language = LanguageConfig(features="labels", clip=TINY, schedule="joint") if self.language else None
        result = reconstruct(data, self.out / "scene", self.train, language=language, overwrite=self.overwrite,
                             progress=not self.quiet, **_evaluation())
        assert result is not None
        _print_summary(result)
        scene = result.scene_dir
        print(f"next: langfield render {scene} --out {self.out / 'renders'} --orbit 36")
        if self.language:
            queries = self.out / "queries"
            run_query(Query(scene=scene, texts=DEMO_QUERIES, out=queries, backend=self.train.backend))
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
        settings = scene.settings
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
            "iterations": settings.iterations,
            "data": str(settings.data) if settings.data is not None else None,
            "capture_kind": settings.capture_kind,
        })
        return 0


@dataclass
class Check:
    """Validate a dataset the way `reconstruct` reads it (frames, intrinsics, distortion, depth, labels, split,
    points, every pixel) without training; prints a JSON summary with warnings, or the first error."""

    data: DataArg
    """Dataset: a transforms.json or a directory (nerfstudio, COLMAP sparse model, LLFF poses_bounds.npy)."""
    images: Optional[str] = None
    """Image sub-folder to use (e.g. images_8 for LLFF)."""
    downscale: int = 1
    """Check the images as `reconstruct --downscale K` will load them."""
    eval_every: int = 8
    """Hold out every N-th image for evaluation unless the dataset defines a split (0 = none)."""

    def run(self) -> int:
        from langfield.sources.check import check_dataset

        _print_json(check_dataset(self.data, images=self.images, downscale=self.downscale,
                                  eval_every=self.eval_every))
        return 0


def _commands(reconstruct_default: Optional[Reconstruct] = None) -> Any:
    """The subcommands; ``reconstruct_default`` gives `reconstruct` other starting values (a preset)."""
    reconstruct = (tyro.conf.subcommand("reconstruct") if reconstruct_default is None
                   else tyro.conf.subcommand("reconstruct", default=reconstruct_default))
    return Union[
        Annotated[Reconstruct, reconstruct],
        Annotated[Poses, tyro.conf.subcommand("poses")],
        Annotated[Slam, tyro.conf.subcommand("slam")],
        Annotated[Check, tyro.conf.subcommand("check")],
        Annotated[Render, tyro.conf.subcommand("render")],
        Annotated[Eval, tyro.conf.subcommand("eval")],
        Annotated[Demo, tyro.conf.subcommand("demo")],
        Annotated[Info, tyro.conf.subcommand("info")],
        Annotated[Query, tyro.conf.subcommand("query")],
        Annotated[Select, tyro.conf.subcommand("select")],
        Annotated[Weights, tyro.conf.subcommand("weights")],
        Annotated[EvalQueries, tyro.conf.subcommand("eval-queries")],
        Annotated[Lift, tyro.conf.subcommand("lift")],
        Annotated[ViewCommand, tyro.conf.subcommand("view")],
    ]


Command = _commands()


def _parse(args: list[str], description: str) -> Any:
    """The command line as a command object.

    tyro fills an option that is not given with its default, so two facts need
    another parse of the same arguments with other defaults: a preset (the
    second parse starts from its TrainConfig, so the options given still
    override it) and, with --resume, whether the iterations were given (they
    were when the parsed value does not follow a changed default).
    """
    def parse(reconstruct_default: Optional[Reconstruct] = None) -> Any:
        return tyro.cli(_commands(reconstruct_default), args=args, prog="langfield", description=description)

    cmd = parse()
    if not isinstance(cmd, Reconstruct):
        return cmd
    base = TRAIN_PRESETS[cmd.preset_name()]()
    if cmd.preset_name() != "default":
        cmd = parse(Reconstruct(data=tyro.MISSING, out=tyro.MISSING, train=base))  # type: ignore[arg-type]
    if cmd.resume:
        probe = parse(Reconstruct(data=tyro.MISSING, out=tyro.MISSING,  # type: ignore[arg-type]
                                  train=replace(base, iterations=base.iterations + 1)))
        cmd = replace(cmd, iterations_given=probe.train.iterations == cmd.train.iterations)
    return cmd


def _error_message(e: BaseException) -> str:
    """One line for an error that ends a command; an OSError names its file (the real one, not a temp file)."""
    if isinstance(e, json.JSONDecodeError):
        msg = f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg} (rerun with --debug to see which file)"
    elif isinstance(e, OSError) and not isinstance(e, LangfieldError):
        from langfield.io import is_temp_file

        def name(f) -> str:
            p = Path(os.fsdecode(f))
            # ".point_cloud.ply.x1y2.tmp" is langfield.io's temp file for point_cloud.ply.
            return str(p.with_name(p.name[1:].rsplit(".", 2)[0])) if is_temp_file(p) else str(p)

        reason = e.strerror or str(e) or type(e).__name__
        # A rename names (temp file, target): both map to the target, so say it once.
        names = list(dict.fromkeys(name(f) for f in (e.filename, e.filename2) if f is not None))
        msg = f"{' -> '.join(names)}: {reason}" if names else f"{reason} ({type(e).__name__})"
    else:
        msg = str(e)
    return " ".join(msg.split())  # one line, whatever the message held


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``langfield`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is handled here rather than by tyro so it works in any position.
    debug = "--debug" in args or os.environ.get("LANGFIELD_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    description = ("langfield: Gaussian-splatting scenes from posed captures. "
                   "Add --debug (or LANGFIELD_DEBUG=1) to see tracebacks of errors.")
    try:
        # Inside the try: config dataclasses validate in __post_init__ and raise LangfieldErrors while tyro builds them.
        cmd = _parse(args, description)
        return int(cmd.run() or 0)
    except (LangfieldError, OSError, json.JSONDecodeError) as e:
        # The one error path: user errors, and any OSError (permissions, full disk, read-only or missing
        # directory) or parse error that reached this far, become one line and exit code 2.
        if debug:
            raise
        print(f"error: {_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: what was saved is kept (a reconstruct's latest checkpoint: continue it with "
              "`langfield reconstruct ... --resume`; a slam map's last snapshot)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
