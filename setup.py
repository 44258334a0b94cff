"""Build hooks for the native kernels (see cuda/ and docs/rasterizer.md).

Metadata is in pyproject.toml.  The kernels are compiled just in time on
first use (langfield/render/_build.py), so nothing is compiled here; a
regular (non-editable) install only needs the kernel sources, which
``build_py`` copies into the package as ``langfield/_csrc/``.  Editable
installs read them from the repository's ``cuda/`` directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
KERNEL_SOURCES = ROOT / "cuda"
SUFFIXES = {".h", ".cpp", ".cu", ".cuh"}


class BuildPyWithKernels(build_py):
    """build_py that also ships cuda/**.{h,cpp,cu} as langfield/_csrc/."""

    def run(self) -> None:
        super().run()
        if not KERNEL_SOURCES.is_dir():
            return
        dest = Path(self.build_lib) / "langfield" / "_csrc"
        for src in sorted(KERNEL_SOURCES.rglob("*")):
            if src.is_file() and src.suffix in SUFFIXES:
                out = dest / src.relative_to(KERNEL_SOURCES)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)


# pyproject.toml maps langfield.viewer to viewer/ (package-dir); a `packages.find` there could not
# include a package living outside langfield/, so the list is built here (namespaces, like find).
PACKAGES = [*find_namespace_packages(where=str(ROOT), include=["langfield*"]), "langfield.viewer"]

setup(cmdclass={"build_py": BuildPyWithKernels}, packages=PACKAGES)
