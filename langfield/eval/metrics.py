"""Image-quality metrics (no gradients): PSNR and SSIM; defined in ``langfield.render.image_metrics``."""

from __future__ import annotations

from langfield.render.image_metrics import psnr
from langfield.render.image_metrics import ssim_value as ssim

__all__ = ["psnr", "ssim"]
