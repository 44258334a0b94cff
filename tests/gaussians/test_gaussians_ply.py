"""3DGS PLY save/load: exact round trip, foreign files, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from langfield.gaussians.params import create_params, num_sh_bases
from langfield.gaussians.ply import load_ply, ply_property_names, save_ply
from langfield.types import DataError


def _random_params(n: int, degree: int, latent_dim: int, seed: int = 0) -> torch.nn.ParameterDict:
    g = torch.Generator().manual_seed(seed)
    k = num_sh_bases(degree)
    return create_params(
        means=torch.randn(n, 3, generator=g) * 10,
        log_scales=torch.randn(n, 3, generator=g) - 4,
        quats=torch.randn(n, 4, generator=g) * 3,  # unnormalised on purpose
        opacity_logits=torch.randn(n, generator=g) * 5,
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, k - 1, 3, generator=g),
        latents=torch.randn(n, latent_dim, generator=g) if latent_dim else None,
    )


@pytest.mark.parametrize("degree", [0, 3])
@pytest.mark.parametrize("latent_dim", [0, 5])
def test_round_trip_bit_exact(tmp_path: Path, degree: int, latent_dim: int):
    params = _random_params(37, degree, latent_dim)
    path = save_ply(tmp_path / "g.ply", params)
    loaded = load_ply(path)
    assert set(loaded.keys()) == set(params.keys())
    for key in params:
        a, b = params[key].detach(), loaded[key].detach()
        assert a.shape == b.shape, key
        # compare the bit patterns, not just values
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), key
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_header_is_standard_3dgs_layout(tmp_path: Path):
    params = _random_params(4, 1, 2)
    save_ply(tmp_path / "g.ply", params, extra={"weight": torch.arange(4.0), "seg": torch.zeros(4, 2)})
    ply = PlyData.read(str(tmp_path / "g.ply"))
    assert ply.elements[0].name == "vertex" and ply.elements[0].count == 4
    names = [p.name for p in ply["vertex"].properties]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(9)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3", "lang_0", "lang_1", "weight", "seg_0", "seg_1"]
    assert names == expected
    assert ply_property_names(1, 2) == expected[:-3]
    assert all(ply["vertex"].data.dtype[n] == np.dtype("<f4") for n in names)
    assert ply.text is False and ply.byte_order == "<"
    v = ply["vertex"].data
    # channel-major f_rest: f_rest_0..2 are the R coefficients of bands 1..3, then G, then B
    shn = params["shN"].detach()
    for c in range(3):
        for j in range(3):
            np.testing.assert_array_equal(v[f"f_rest_{c * 3 + j}"], shn[:, j, c].numpy())
    np.testing.assert_array_equal(v["weight"], np.arange(4.0, dtype=np.float32))
    # the extra columns do not disturb loading
    assert set(load_ply(tmp_path / "g.ply").keys()) == set(params.keys())


def _foreign_ply(path: Path, n: int = 6, drop: str = "") -> dict[str, np.ndarray]:
    """A degree-1 PLY as another tool might write it: no normals, float64 columns, an extra property."""
    rng = np.random.default_rng(0)
    cols = {"x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n)}
    cols["confidence"] = rng.random(n)
    for i in range(3):
        cols[f"f_dc_{i}"] = rng.normal(size=n)
    for i in range(9):
        cols[f"f_rest_{i}"] = rng.normal(size=n)
    cols["opacity"] = rng.normal(size=n)
    for i in range(3):
        cols[f"scale_{i}"] = rng.normal(size=n)
    for i in range(4):
        cols[f"rot_{i}"] = rng.normal(size=n)
    cols = {k: v for k, v in cols.items() if k != drop}
    data = np.empty(n, dtype=[(k, "f8" if k in ("x", "confidence") else "f4") for k in cols])
    for k, v in cols.items():
        data[k] = v
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))
    return cols


def test_loads_foreign_degree1_ply(tmp_path: Path):
    cols = _foreign_ply(tmp_path / "f.ply")
    p = load_ply(tmp_path / "f.ply")
    assert p["shN"].shape == (6, 3, 3)
    assert "latents" not in p
    f32 = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731
    torch.testing.assert_close(p["means"][:, 0].detach(), f32(cols["x"]), rtol=0, atol=0)
    torch.testing.assert_close(p["opacities"].detach(), f32(cols["opacity"]), rtol=0, atol=0)
    torch.testing.assert_close(p["quats"][:, 3].detach(), f32(cols["rot_3"]), rtol=0, atol=0)
    for c in range(3):
        torch.testing.assert_close(p["sh0"][:, 0, c].detach(), f32(cols[f"f_dc_{c}"]), rtol=0, atol=0)
        for j in range(3):
            torch.testing.assert_close(p["shN"][:, j, c].detach(), f32(cols[f"f_rest_{c * 3 + j}"]), rtol=0, atol=0)

    padded = load_ply(tmp_path / "f.ply", sh_degree=3)
    assert padded["shN"].shape == (6, 15, 3)
    assert torch.equal(padded["shN"][:, :3], p["shN"]) and not padded["shN"][:, 3:].any()
    truncated = load_ply(tmp_path / "f.ply", sh_degree=0)
    assert truncated["shN"].shape == (6, 0, 3)


def test_loads_degree0_without_f_rest(tmp_path: Path):
    params = _random_params(5, 0, 0)
    save_ply(tmp_path / "d0.ply", params)
    ply = PlyData.read(str(tmp_path / "d0.ply"))
    assert not any(p.name.startswith("f_rest") for p in ply["vertex"].properties)
    assert load_ply(tmp_path / "d0.ply", sh_degree=2)["shN"].shape == (5, 8, 3)


@pytest.mark.parametrize("drop", ["rot_2", "opacity", "f_dc_1", "f_rest_4"])
def test_missing_property_names_file_and_property(tmp_path: Path, drop: str):
    path = tmp_path / "bad.ply"
    _foreign_ply(path, drop=drop)
    with pytest.raises(DataError, match=rf"bad\.ply.*{drop}"):
        load_ply(path)


def test_damaged_files_raise_data_error(tmp_path: Path):
    path = save_ply(tmp_path / "g.ply", _random_params(50, 3, 4))
    raw = path.read_bytes()
    cases = {
        "truncated.ply": raw[: len(raw) - 100],
        "garbage.ply": b"\x00\x01 not a ply at all" * 10,
        "header_only.ply": raw[: raw.index(b"end_header")],
        "empty.ply": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            load_ply(tmp_path / name)
    with pytest.raises(DataError, match="not found"):
        load_ply(tmp_path / "missing.ply")


def test_bad_f_rest_count(tmp_path: Path):
    n = 3
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "f_rest_0", "f_rest_1", "f_rest_2", "f_rest_3"]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.zeros(n, dtype=[(k, "f4") for k in names])
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "odd.ply"))
    with pytest.raises(DataError, match="f_rest"):
        load_ply(tmp_path / "odd.ply")


def test_overwrite_is_atomic_replace(tmp_path: Path):
    path = tmp_path / "g.ply"
    save_ply(path, _random_params(3, 0, 0, seed=1))
    second = _random_params(8, 1, 2, seed=2)
    save_ply(path, second)
    assert torch.equal(load_ply(path)["latents"], second["latents"])
    assert [p.name for p in tmp_path.iterdir()] == ["g.ply"]
