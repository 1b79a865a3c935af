"""TensoRF's no-grad NDC render (models/tensorf/fast.py) against the plain path it replaces
(`RenderPolicy(fast=False)`, the path training takes) and the baked appearance slices against
the plain appearance reference. Speed is measured in bench/render_speed.py, never here.

The fast path decodes colour in bfloat16 on CPUs that multiply it natively; the comparisons
with the plain path pin float32 decoding (`float32_decoder`, autouse) so they hold to 1e-5, and
the bfloat16 decoder is compared with the float32 one on its own, to its stated tolerance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import nerfcli.models.tensorf.fast as fast_module
import nerfcli.models.tensorf.field as field_module
from nerfcli.data.rays import make_rays
from nerfcli.models.reference import appearance_reference, render_rays_reference
from nerfcli.models.tensorf.factors import appearance_at_depths, gather_slices, read_slices
from tests.unit.test_tensorf import blob_model, make_model, ndc_rays, random_coords


@pytest.fixture(autouse=True)
def float32_decoder(monkeypatch):
    """Colour decoded in float32 on every CPU (bfloat16 is tested on its own below)."""
    monkeypatch.setattr(fast_module, "decoder_dtype", lambda device: torch.float32)


def render_both(model, rays, near=0.0, far=1.0):
    """(fast, plain) no-grad renders of the same rays."""
    fast_policy = model.policy
    with torch.no_grad():
        fast = model.render_rays(rays, near, far, train=False)
        counts = model.last_sample_counts
        model.policy = dataclasses.replace(fast_policy, fast=False)
        plain = model.render_rays(rays, near, far, train=False)
    model.policy = fast_policy
    return fast, plain, counts


def assert_same_render(fast, plain, atol=1e-5):
    torch.testing.assert_close(fast.rgb, plain.rgb, atol=atol, rtol=1e-4)
    torch.testing.assert_close(fast.depth, plain.depth, atol=atol, rtol=1e-4)
    torch.testing.assert_close(fast.opacity, plain.opacity, atol=atol, rtol=1e-4)
    torch.testing.assert_close(fast.disparity, plain.disparity, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("count", [1, 16, 97])
@pytest.mark.parametrize("colours", [1, 3, 8])
def test_fast_render_matches_the_plain_path(count, colours):
    model = make_model(seed=count + colours)
    with torch.no_grad():  # denser than the initial field: opaque rays
        for plane in model.field.density_planes:
            plane.mul_(4.0)
    model.policy = dataclasses.replace(model.policy, colour_samples=colours)
    fast, plain, counts = render_both(model, ndc_rays(count, seed=count))
    assert_same_render(fast, plain)
    assert counts[2] <= colours * count  # at most K colour evaluations per ray
    assert float(plain.opacity.max()) > 0.5  # the blobs are in view: not an empty scene


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_render_matches_on_random_fields_and_white_background(seed):
    model = make_model("data.background=white", seed=seed)
    fast, plain, _ = render_both(model, ndc_rays(64, seed=seed))
    assert_same_render(fast, plain)


def test_fast_render_with_softplus_density():
    model = make_model("model.tensorf.density_activation=softplus", seed=4)
    fast, plain, _ = render_both(model, ndc_rays(40))
    assert_same_render(fast, plain)


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_fast_render_matches_for_rays_leaving_the_box(activation):
    """A box narrower than the view: the side samples are outside (zero density) on both."""
    model = make_model(
        "model.tensorf.aabb=[-0.4,-0.3,-1,0.4,0.3,1]",
        f"model.tensorf.density_activation={activation}",
        seed=3,
    )
    rays = make_rays(12, 16, 9.0, torch.eye(4)[:3], ndc=True).reshape(-1)
    start = model.field.normalize(rays.origins)[:, :2]
    end = model.field.normalize(rays.origins + rays.directions)[:, :2]
    assert bool(((start.abs() > 1) | (end.abs() > 1)).any())  # some samples leave the box
    fast, plain, _ = render_both(model, rays)
    assert bool(torch.isfinite(fast.rgb).all())
    assert_same_render(fast, plain)


def test_fast_render_is_the_reference_when_colour_is_constant_along_rays():
    """With one colour along each ray the quantile colours are exact: fast == reference."""
    model = blob_model(5)
    with torch.no_grad():
        for factor in [*model.field.app_planes, *model.field.app_lines]:
            factor.copy_(
                torch.linspace(0.2, 0.9, factor.shape[1]).view(1, -1, 1, 1).expand_as(factor)
            )
    rays = ndc_rays(50)
    with torch.no_grad():
        fast = model.render_rays(rays, 0.0, 1.0, train=False)
        reference = render_rays_reference(model, rays, 0.0, 1.0, train=False)
    torch.testing.assert_close(fast.rgb, reference.rgb, atol=1e-5, rtol=1e-4)


def test_training_and_grad_renders_keep_the_plain_path():
    model = blob_model(6)
    rays = ndc_rays(32)
    out = model.render_rays(rays, 0.0, 1.0, train=False)  # grad enabled: plain, differentiable
    assert out.rgb.requires_grad
    policy = dataclasses.replace(model.policy, fast=False)
    model.policy = policy
    plain = model.render_rays(rays, 0.0, 1.0, train=False)
    torch.testing.assert_close(out.rgb, plain.rgb)


# ----------------------------------------------------------------------------- baked slices


@pytest.mark.parametrize("grid", ["[11,9,7]", "[8,8,8]", "[5,12,3]"])
def test_baked_appearance_slices_are_the_field(grid):
    """Bilinear reads of the baked slices equal the appearance at points on them."""
    model = make_model(f"model.tensorf.grid_init={grid}", seed=2)
    z = torch.tensor([-1.0, -0.37, 0.0, 0.52, 1.0])  # [S]
    with torch.no_grad():
        table = appearance_at_depths(
            list(model.field.app_planes), list(model.field.app_lines), model.field.basis.weight, z
        )
        xy = random_coords(400)[:, :2]
        index = torch.arange(400) % len(z)
        coords = torch.cat([xy, z[index][:, None]], 1)
        expected = appearance_reference(
            list(model.field.app_planes), list(model.field.app_lines), model.field.basis, coords
        )
        corners = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
        corner_expected = appearance_reference(
            list(model.field.app_planes),
            list(model.field.app_lines),
            model.field.basis,
            torch.cat([corners, z[:3, None]], 1),
        )
    rx, ry = model.field.resolution[:2]
    assert table.shape == (len(z), ry, rx, 5)
    torch.testing.assert_close(read_slices(table, xy, index), expected, atol=1e-5, rtol=1e-5)
    got = read_slices(table, corners, torch.arange(3))  # the box edges: clamped, not wrapped
    torch.testing.assert_close(got, corner_expected, atol=1e-5, rtol=1e-5)


def test_half_precision_table_keeps_eleven_bits():
    model = make_model(seed=5)
    z = torch.linspace(-1.0, 1.0, 6)
    args = (list(model.field.app_planes), list(model.field.app_lines), model.field.basis.weight, z)
    with torch.no_grad():
        full = appearance_at_depths(*args)
        half = appearance_at_depths(*args, dtype=torch.float16, block=4)  # blocks: 4 + 2
        xy = random_coords(300)[:, :2]
        index = torch.arange(300) % len(z)
        read_full, read_half = read_slices(full, xy, index), read_slices(half, xy, index)
    assert half.dtype == torch.float16 and read_half.dtype == torch.float32
    scale = float(full.abs().max())
    torch.testing.assert_close(half.float(), full, atol=scale * 2**-10, rtol=0)
    torch.testing.assert_close(read_half, read_full, atol=scale * 2**-10, rtol=0)
    assert not torch.equal(read_half, read_full)  # it is the half table that was read


def test_the_table_is_baked_once_it_pays_and_dropped_by_training(monkeypatch):
    model = blob_model(7)
    rays = ndc_rays(64)
    t_row = model.sample_depths(rays, 0.0, 1.0, train=False)[0]
    z = model.field.slice_depths(rays, t_row)
    ry, rx = model.field.app_planes[0].shape[2:]
    vertices = ry * rx * len(z)
    monkeypatch.setattr(field_module, "BAKE_AFTER", vertices / 128)  # after 128 rays
    with torch.no_grad():
        unbaked = model.render_rays(rays, 0.0, 1.0, train=False)
        assert "app_table" not in model.field._caches
        model.render_rays(rays, 0.0, 1.0, train=False)
        assert "app_table" in model.field._caches
        baked = model.render_rays(rays, 0.0, 1.0, train=False)
    torch.testing.assert_close(baked.rgb, unbaked.rgb, atol=1e-5, rtol=1e-4)
    model.render_rays(rays, 0.0, 1.0, train=True)  # a training step: the caches go
    assert "app_table" not in model.field._caches
    monkeypatch.setattr(field_module, "BAKE_MAX_BYTES", 1.0)  # too large: never baked
    with torch.no_grad():
        for _ in range(4):
            model.render_rays(rays, 0.0, 1.0, train=False)
    assert "app_table" not in model.field._caches


def test_ndc_views_an_ulp_apart_share_their_slices_and_the_baked_table(monkeypatch):
    # float32 leaves NDC rays' z origin and direction an ulp or two off -1 and 2, by a mean
    # that differs between views; the slices (and the table keyed on them) must not
    rays = ndc_rays(64)
    model = blob_model(7)
    t_row = model.sample_depths(rays, 0.0, 1.0, train=False)[0]

    def ulps(values: torch.Tensor, count: int) -> torch.Tensor:  # count ulps up (down if < 0)
        for _ in range(abs(count)):
            values = torch.nextafter(values, torch.full_like(values, 10.0 * count))
        return values

    shifted = []
    for count in (1, -2):
        origins, directions = rays.origins.clone(), rays.directions.clone()
        origins[:, 2], directions[:, 2] = ulps(origins[:, 2], count), ulps(directions[:, 2], -count)
        shifted.append(dataclasses.replace(rays, origins=origins, directions=directions))
    assert not torch.equal(shifted[0].origins[:, 2], rays.origins[:, 2])
    z = model.field.slice_depths(rays, t_row)
    for other in shifted:
        assert torch.equal(model.field.slice_depths(other, t_row), z)
    monkeypatch.setattr(field_module, "BAKE_AFTER", 1e12)  # worth baking at once
    with torch.no_grad():
        model.render_rays(rays, 0.0, 1.0, train=False)
        table = model.field._caches["app_table"]
        for other in shifted:
            model.render_rays(other, 0.0, 1.0, train=False)
            assert model.field._caches["app_table"] is table  # not baked again


def test_while_one_render_thread_bakes_the_others_read_the_factors(monkeypatch):
    # a bake in progress (another worker) makes appearance_table answer None at once instead
    # of waiting on the lock; once it is over the next call bakes
    model = blob_model(7)
    rays = ndc_rays(64)
    t_row = model.sample_depths(rays, 0.0, 1.0, train=False)[0]
    z = model.field.slice_depths(rays, t_row)
    monkeypatch.setattr(field_module, "BAKE_AFTER", 1e12)  # worth baking at once
    with torch.no_grad():
        model.field._baking = True
        assert model.field.appearance_table(z, 64) is None
        assert "app_table" not in model.field._caches
        model.field._baking = False
        table = model.field.appearance_table(z, 64)
    assert table is not None and model.field._caches["app_table"][1] is table
    assert not model.field._baking


# ----------------------------------------------------------------------------- CPU profile path

CPU_DECODER = ("model.tensorf.view_pe=0", "model.tensorf.feature_pe=0")


@pytest.mark.parametrize("baked", [False, True])
def test_fast_render_with_the_cpu_profile_decoder(monkeypatch, baked):
    """No positional encodings (the CPU profile): fast == plain, from the factors and from the
    baked slices (baked at once when `baked`, never when not)."""
    monkeypatch.setattr(field_module, "BAKE_AFTER", 1e12 if baked else 0.0)
    model = make_model(*CPU_DECODER, "model.tensorf.colour_samples=4", seed=8)
    with torch.no_grad():
        for plane in model.field.density_planes:
            plane.mul_(4.0)
    fast, plain, counts = render_both(model, ndc_rays(90, seed=8))
    assert ("app_table" in model.field._caches) == baked
    assert_same_render(fast, plain)
    assert 90 <= counts[2] <= 4 * 90  # one to K colours a ray, each distinct sample once


@pytest.mark.parametrize("scale", [0.0, 1e-3, 300.0])
def test_fast_render_for_rays_that_never_saturate_and_rays_that_saturate_at_once(scale):
    """Density scaled to nothing (opacity 0: the quantiles of an empty ray), to a faint haze
    (transmittance near 1 to the last sample, whose 1e10 delta may still stop the ray) and to
    a wall (transmittance 0 after the first sample: ties in the transmittance, every quantile
    at one sample). Samples from t = 0.2, so depth, and disparity, stay well away from 0."""
    model = make_model(*CPU_DECODER, seed=9)
    with torch.no_grad():
        for plane in model.field.density_planes:
            plane.copy_((plane.abs() + 0.5) * scale)
    fast, plain, counts = render_both(model, ndc_rays(70, seed=9), near=0.2)
    assert_same_render(fast, plain)
    opacity = plain.opacity
    if scale == 0.0:
        assert float(opacity.max()) == 0.0 and counts[2] == 70  # one colour a ray
    elif scale < 1.0:
        assert float((opacity < 0.05).float().mean()) > 0.5  # most rays: T > 0.95 throughout
    else:
        assert float((opacity > 1.0 - 1e-6).float().mean()) > 0.5
        assert counts[2] < 2 * 70  # the mass of most rays in one sample


@pytest.mark.parametrize("rows", [1, fast_module.DECODER_PAD - 1, fast_module.DECODER_ROWS + 3])
@pytest.mark.parametrize("encodings", [0, 2])
def test_decode_is_the_decoder_in_blocks_and_padding(rows, encodings):
    """decode() (padded to DECODER_PAD, in blocks of DECODER_ROWS) == the decoder's forward."""
    model = make_model(
        f"model.tensorf.view_pe={encodings}", f"model.tensorf.feature_pe={encodings}"
    )
    generator = torch.Generator().manual_seed(rows)
    features = torch.randn(rows, 5, generator=generator)
    viewdirs = torch.nn.functional.normalize(torch.randn(rows, 3, generator=generator), dim=-1)
    with torch.no_grad():
        inputs = fast_module.decoder_parts(model.field.decoder, features, viewdirs)
        got = fast_module.decode(model.field, inputs)
        expected = model.field.decoder(features, viewdirs)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("encodings", [0, 2])
def test_decode_rows_of_column_blocks_is_decode_rows_of_their_concatenation(dtype, encodings):
    """decode_rows given decoder_parts (each block written into the padded block in place)
    gives the same bits as given their concatenation, with padding rows."""
    model = make_model(
        f"model.tensorf.view_pe={encodings}", f"model.tensorf.feature_pe={encodings}"
    )
    rows = fast_module.DECODER_ROWS + fast_module.DECODER_PAD // 2 + 1
    generator = torch.Generator().manual_seed(encodings)
    features = torch.randn(rows, 5, generator=generator)
    viewdirs = torch.nn.functional.normalize(torch.randn(rows, 3, generator=generator), dim=-1)
    decoder = model.field.decoder
    layers = fast_module._layers(decoder, dtype)
    with torch.no_grad():
        parts = fast_module.decoder_parts(decoder, features, viewdirs)
        assert len(parts) == (4 if encodings else 2)
        got = fast_module.decode_rows(layers, parts, dtype)
        whole = fast_module.decode_rows(layers, torch.cat(parts, 1), dtype)
    assert got.shape == (rows, 3) and got.dtype == torch.float32
    assert torch.equal(got, whole)


def test_bfloat16_decoder_is_within_its_tolerance(monkeypatch):
    """Where the CPU multiplies bfloat16 natively the decoder runs in it: inputs and weights
    keep 8 significant bits, so the colour (after a sigmoid, slope <= 1/4) moves by a few
    1e-3 at most (fern's decoder: 1.7e-3 at most over a frame). Bound: 1e-2, mean 2e-3."""
    monkeypatch.undo()  # the real decoder_dtype
    if fast_module.decoder_dtype(torch.device("cpu")) != torch.bfloat16:
        pytest.skip("this CPU decodes in float32 (no AVX512-BF16 or no oneDNN)")
    model = make_model(*CPU_DECODER, "model.tensorf.app_dim=27", "model.tensorf.decoder_width=64")
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(3000, 27, generator=generator)
    viewdirs = torch.nn.functional.normalize(torch.randn(3000, 3, generator=generator), dim=-1)
    with torch.no_grad():
        got = fast_module.decode(
            model.field, fast_module.decoder_parts(model.field.decoder, features, viewdirs)
        )
        expected = model.field.decoder(features, viewdirs)
    error = (got - expected).abs()
    assert got.dtype == torch.float32
    assert float(error.max()) < 1e-2 and float(error.mean()) < 2e-3
    assert float(error.max()) > 0.0  # it is the bfloat16 product that was measured


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gather_slices_is_read_slices(dtype):
    """The embedding_bag read of the slice table == read_slices: to float32 rounding for a
    float32 table; within the half rounding of weights and result (2^-10 of the table's
    largest value) for a half one; the box edges clamped, not wrapped."""
    model = make_model("model.tensorf.grid_init=[9,7,5]", seed=6)
    z = torch.tensor([-1.0, -0.2, 0.4, 1.0])
    with torch.no_grad():
        table = appearance_at_depths(
            list(model.field.app_planes),
            list(model.field.app_lines),
            model.field.basis.weight,
            z,
            dtype,
        )
    xy = torch.cat([random_coords(500)[:, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]])])
    index = torch.arange(len(xy)) % len(z)
    got, expected = gather_slices(table, xy, index), read_slices(table, xy, index)
    assert got.dtype == dtype and got.shape == expected.shape == (len(xy), 5)
    scale = float(table.abs().max())
    tolerance = 1e-6 * scale if dtype == torch.float32 else 2**-10 * scale
    torch.testing.assert_close(got.float(), expected, atol=tolerance, rtol=0)
