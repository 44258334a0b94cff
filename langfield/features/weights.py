"""Weights registry: what each ``--clip`` / ``--sam`` option needs and where langfield looks for it.

langfield never downloads anything.  For a model option it looks, in order:

1. an explicit file path in the option itself (``--clip ViT-B-16:/path/ckpt.bin``,
   ``--sam /path/sam_vit_b_01ec64.pth``);
2. the env var ``LANGFIELD_CLIP_CHECKPOINT`` / ``LANGFIELD_SAM_CHECKPOINT``
   (a file; used when the option names no path);
3. the weights cache ``$LANGFIELD_WEIGHTS`` (default ``~/.cache/langfield/weights``):
   ``clip/<model>/<tag>/<file>`` and ``sam/<file>``;
4. for CLIP only, a file already in the local Hugging Face hub cache (read
   offline, never fetched).

When nothing is found a :class:`LangfieldError` says what to download and
where to put it.  ``test-tiny`` needs no file: it is a deliberately random,
tiny model for tests and offline demos.

sha256 values: the OpenAI CLIP URLs embed their sha256 (open_clip verifies
against it), so those are exact. The SAM digests are the ones the community
has published for Meta's files for years (identical in many independent
projects that check them; Meta itself publishes none). The LAION CLIP files
on Hugging Face carry their digest only on the hub's file page, so ``sha256``
is None there. ``langfield weights --verify`` checks the files present.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from langfield.integrity import sha256_file
from langfield.types import LangfieldError

TINY = "test-tiny"
DEFAULT_CLIP_MODEL = "ViT-B-16"
DEFAULT_CLIP_TAG = "laion2b_s34b_b88k"
DEFAULT_CLIP = f"{DEFAULT_CLIP_MODEL}:{DEFAULT_CLIP_TAG}"
DEFAULT_SAM = "vit_h"

WEIGHTS_ENV = "LANGFIELD_WEIGHTS"
CLIP_ENV = "LANGFIELD_CLIP_CHECKPOINT"
SAM_ENV = "LANGFIELD_SAM_CHECKPOINT"

# open_clip's Hugging Face file names, safetensors preferred (no pickle).
CLIP_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_SAM_FILES = {
    "vit_h": ("sam_vit_h_4b8939.pth", 2564),
    "vit_l": ("sam_vit_l_0b3195.pth", 1250),
    "vit_b": ("sam_vit_b_01ec64.pth", 375),
}
_SAM_SHA256 = {
    "vit_h": "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    "vit_l": "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    "vit_b": "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
}
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class WeightSpec:
    """One downloadable file a model option needs."""

    option: str
    """The value to pass, e.g. ``--clip ViT-B-16:laion2b_s34b_b88k`` or ``--sam vit_b``."""
    kind: str
    """"clip" or "sam"."""
    description: str
    """What the model is, one line."""
    filename: str
    """File name langfield looks for (as published)."""
    url: Optional[str]
    """Where to download it (None for test-tiny)."""
    sha256: Optional[str]
    """Published sha256 when known and certain, else None (see module docstring)."""
    size_mb: Optional[int]
    """Approximate download size in MB."""
    env_var: Optional[str]
    """Env var that may point at the file directly."""
    relative_dir: Optional[str]
    """Folder under the weights cache where the file goes."""

    def target_path(self) -> Optional[Path]:
        """Where to put the downloaded file so langfield finds it."""
        if self.relative_dir is None:
            return None
        return weights_dir() / self.relative_dir / self.filename


def weights_dir() -> Path:
    """The weights cache: ``$LANGFIELD_WEIGHTS`` or ``~/.cache/langfield/weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/langfield/weights").expanduser()


# --------------------------------------------------------------------------- CLIP


def parse_clip_option(option: str) -> tuple[str, Optional[str], Optional[Path]]:
    """``"MODEL[:TAG|:PATH]"`` or a bare checkpoint path -> (model, tag, path).

    A bare path (an existing file, or anything with a path separator / known
    checkpoint suffix) means the default architecture ViT-B-16 with that file.
    """
    if option == TINY:
        return TINY, None, None
    model, sep, rest = option.partition(":")
    if (not sep or os.sep in model or not model) and _looks_like_path(option):
        return DEFAULT_CLIP_MODEL, None, Path(option).expanduser()
    if not sep or not rest:
        return model, DEFAULT_CLIP_TAG if model == DEFAULT_CLIP_MODEL else _first_tag(model), None
    if _looks_like_path(rest):
        return model, None, Path(rest).expanduser()
    return model, rest, None


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or text.startswith("~")
        or text.endswith((".pt", ".pth", ".bin", ".safetensors"))
        or Path(text).is_file()
    )


def _first_tag(model: str) -> Optional[str]:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else None


def check_clip_model_name(model: str) -> None:
    """Raise a clear error for a name open_clip has no config for."""
    import open_clip

    if model == TINY:
        return
    if model not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if model.lower() in m.lower()][:8]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise LangfieldError(
            f"unknown CLIP model {model!r}{hint}; use an open_clip model name (open_clip.list_models()) or {TINY!r}"
        )


def clip_weight_spec(model: str, tag: Optional[str]) -> WeightSpec:
    """The spec of an open_clip (model, pretrained tag) pair, from open_clip's own table."""
    import open_clip

    check_clip_model_name(model)
    if tag is None:
        raise LangfieldError(
            f"CLIP model {model!r} has no published pretrained weights; pass MODEL:/path/to/checkpoint"
        )
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise LangfieldError(f"unknown pretrained tag {tag!r} for CLIP model {model!r}; known tags: {', '.join(tags[:10])}")
    url, sha = cfg.get("url") or None, None
    filename = CLIP_FILENAMES[1]
    repo = hf_repo_of(model, tag)
    if repo is not None:
        filename = repo[1]
        url = f"https://huggingface.co/{repo[0]}/resolve/main/{filename}"
    elif url:
        filename = os.path.basename(url)
        if "openaipublic" in url:
            # OpenAI publishes the sha256 as the URL's directory name
            sha = url.split("/")[-2]
    return WeightSpec(
        option=f"--clip {model}:{tag}",
        kind="clip",
        description=f"open_clip {model} pretrained on {tag}",
        filename=filename,
        url=url,
        sha256=sha,
        size_mb=600 if model == DEFAULT_CLIP_MODEL else None,
        env_var=CLIP_ENV,
        relative_dir=f"clip/{model}/{tag}",
    )


def hf_repo_of(model: str, tag: str) -> Optional[tuple[str, str]]:
    """(repo_id, filename) on the Hugging Face hub for an open_clip tag, if it lives there."""
    import open_clip

    hf = open_clip.get_pretrained_cfg(model, tag).get("hf_hub") or ""
    if not hf:
        return None
    # open_clip's convention: "org/repo/" means the default file, "org/repo/file" names it
    repo_id, fname = os.path.split(hf)
    return repo_id, fname or CLIP_FILENAMES[1]


def find_clip_checkpoint(model: str, tag: Optional[str], path: Optional[Path]) -> Path:
    """Locate the checkpoint for a CLIP option, or raise LangfieldError naming what to download."""
    if path is not None:
        if not path.is_file():
            raise LangfieldError(f"{path}: CLIP checkpoint file not found")
        return path
    env = os.environ.get(CLIP_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise LangfieldError(f"{p}: file named by ${CLIP_ENV} not found")
        return p
    spec = clip_weight_spec(model, tag)
    folder = weights_dir() / str(spec.relative_dir)
    for name in (*CLIP_FILENAMES, spec.filename):
        if (folder / name).is_file():
            return folder / name
    cached = _hf_cache_lookup(model, str(tag))
    if cached is not None:
        return cached
    raise LangfieldError(
        f"CLIP weights for {model}:{tag} not found: download {spec.url} and put it at {spec.target_path()} "
        f"(or set ${CLIP_ENV}, or pass --clip {model}:/path/to/file; --clip {TINY} runs without weights)"
    )


def _hf_cache_lookup(model: str, tag: str) -> Optional[Path]:
    """A file already in the local HF hub cache (offline lookup, no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo = hf_repo_of(model, tag)
    if repo is None:
        return None
    for fname in (CLIP_FILENAMES[0], repo[1]):
        try:
            hit = try_to_load_from_cache(repo[0], fname)
        except Exception:  # malformed cache entries must not break the lookup
            hit = None
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


# --------------------------------------------------------------------------- SAM


def parse_sam_option(option: str) -> tuple[str, Optional[Path]]:
    """``vit_h|vit_l|vit_b[:PATH]``, a bare checkpoint path (type from its name) or test-tiny."""
    if option == TINY:
        return TINY, None
    if option in _SAM_FILES:
        return option, None
    kind, sep, rest = option.partition(":")
    if sep and kind in _SAM_FILES and rest:
        return kind, Path(rest).expanduser()
    if _looks_like_path(option):
        name = Path(option).name
        for kind in _SAM_FILES:
            if kind in name:
                return kind, Path(option).expanduser()
        raise LangfieldError(
            f"{option}: cannot tell the SAM type from the file name; pass vit_h:PATH, vit_l:PATH or vit_b:PATH"
        )
    raise LangfieldError(f"unknown SAM model {option!r}; use vit_h, vit_l, vit_b, TYPE:PATH or {TINY!r}")


def sam_weight_spec(kind: str) -> WeightSpec:
    if kind not in _SAM_FILES:
        raise LangfieldError(f"unknown SAM model {kind!r}; use one of {', '.join(_SAM_FILES)} or {TINY!r}")
    fname, size = _SAM_FILES[kind]
    return WeightSpec(
        option=f"--sam {kind}",
        kind="sam",
        description=f"Segment Anything {kind.replace('_', '-').upper()} image encoder + mask decoder",
        filename=fname,
        url=_SAM_URL + fname,
        sha256=_SAM_SHA256[kind],
        size_mb=size,
        env_var=SAM_ENV,
        relative_dir="sam",
    )


def find_sam_checkpoint(kind: str, path: Optional[Path]) -> Path:
    if path is not None:
        if not path.is_file():
            raise LangfieldError(f"{path}: SAM checkpoint file not found")
        return path
    env = os.environ.get(SAM_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise LangfieldError(f"{p}: file named by ${SAM_ENV} not found")
        return p
    spec = sam_weight_spec(kind)
    target = spec.target_path()
    assert target is not None
    if target.is_file():
        return target
    raise LangfieldError(
        f"SAM {kind} weights not found: download {spec.url} and put it at {target} "
        f"(or set ${SAM_ENV}, or pass --sam {kind}:/path/to/file; --sam {TINY} runs without weights)"
    )


# --------------------------------------------------------------------------- registry


def registry() -> list[WeightSpec]:
    """The options langfield documents (any other open_clip model:tag works the same way)."""
    tiny = WeightSpec(
        option=f"--clip {TINY} / --sam {TINY}",
        kind="test",
        description="tiny randomly initialised CLIP and SAM for tests/offline demos (only exact label names are meaningful)",
        filename="",
        url=None,
        sha256=None,
        size_mb=0,
        env_var=None,
        relative_dir=None,
    )
    return [clip_weight_spec(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_TAG), *(sam_weight_spec(k) for k in _SAM_FILES), tiny]


def describe_weights() -> list[dict]:
    """One dict per registry entry for ``langfield weights``: spec fields + where it goes + whether found."""
    out = []
    for spec in registry():
        row = asdict(spec)
        target = spec.target_path()
        row["target_path"] = str(target) if target is not None else None
        row["present"] = bool(target is not None and target.is_file()) or spec.kind == "test"
        row["weights_dir"] = str(weights_dir())
        out.append(row)
    return out


def verify_sha256(path: Path, expected: Optional[str]) -> None:
    """Raise LangfieldError when a known digest does not match (no-op when unknown)."""
    if not expected:
        return
    got = sha256_file(path)
    if got != expected:
        raise LangfieldError(f"{path}: sha256 {got[:12]}... does not match the published {expected[:12]}...")


def verify_present(rows: list[dict]) -> list[dict]:
    """Add ``verified`` to each ``describe_weights`` row: True/False for a present file with a
    known digest, None when there is nothing to check (missing file, no digest, test model)."""
    out = []
    for row in rows:
        target = row.get("target_path")
        ok: Optional[bool] = None
        if row.get("kind") != "test" and row.get("sha256") and target and Path(target).is_file():
            ok = sha256_file(Path(target)) == row["sha256"]
        out.append({**row, "verified": ok})
    return out
