"""langfield: language-queryable 3D Gaussian splatting."""

__version__ = "0.1.0"
