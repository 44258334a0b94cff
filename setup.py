"""Build hooks for the native kernels live here (see cuda/ and docs/rasterizer.md).

Metadata is in pyproject.toml.
"""

from setuptools import setup

setup()
