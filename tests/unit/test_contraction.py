"""Scene contraction (closed forms, inverse, continuity, bounds) and the unbounded sampler."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from nerfcli.render.contraction import (
    CONTRACTIONS,
    contract,
    contraction_norm,
    radial_stretch,
    uncontract,
)
from nerfcli.render.samplers import box_interval, unbounded_samples

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
points = st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=20)


def test_closed_forms():
    # linf: |(3, 0, 0)| = 3 -> (2 - 1/3); |(2, 1, 0)| = 2 -> x * (2 - 1/2) / 2
    x = torch.tensor([[3.0, 0.0, 0.0], [2.0, 1.0, 0.0], [-2.0, 1.0, -4.0]])
    expected = torch.tensor([[5.0 / 3.0, 0.0, 0.0], [1.5, 0.75, 0.0], [-0.875, 0.4375, -1.75]])
    torch.testing.assert_close(contract(x, "linf"), expected)
    # l2: |(3, 4, 0)| = 5 -> x * (2 - 1/5) / 5 = 0.36 x
    y = contract(torch.tensor([[3.0, 4.0, 0.0]]), "l2")
    torch.testing.assert_close(y, torch.tensor([[1.08, 1.44, 0.0]]))


@pytest.mark.parametrize("kind", CONTRACTIONS)
def test_identity_inside_the_unit_region(kind):
    x = torch.rand(1000, 3, generator=torch.Generator().manual_seed(0)) * 2.0 - 1.0
    x = x / contraction_norm(x, kind).clamp(min=1.0)  # inside the unit cube / ball
    assert torch.equal(contract(x, kind), x)
    assert torch.equal(uncontract(x, kind), x)
    # 1 up to the rounding of |x| for points on the boundary
    torch.testing.assert_close(radial_stretch(x, kind), torch.ones(1000))


@pytest.mark.parametrize("kind", CONTRACTIONS)
@settings(max_examples=60, deadline=None)
@given(xyz=points)
def test_round_trip_to_1e_6(kind, xyz):
    x = torch.tensor(xyz, dtype=torch.float64)  # [P, 3]
    back = uncontract(contract(x, kind), kind)
    torch.testing.assert_close(back, x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", CONTRACTIONS)
@settings(max_examples=60, deadline=None)
@given(xyz=points, scale=st.sampled_from([1.0, 1e10, 1e30]))
def test_everything_lands_inside_the_contracted_cube(kind, xyz, scale):
    x = torch.tensor(xyz, dtype=torch.float32) * scale  # up to 1e36: still finite in float32
    y = contract(x, kind)
    assert bool(torch.isfinite(y).all())
    assert float(y.abs().max()) <= 2.0
    assert bool((contraction_norm(y, kind) <= 2.0 * (1.0 + 1e-6)).all())  # float32 norm
    # the grid coordinates (y / 2) every sample is read at
    assert float((0.5 * y).abs().max()) <= 1.0
    if scale == 1.0:  # |x| <= 1.7e6: strictly inside, and the direction is kept
        assert float(contraction_norm(y.double(), kind).max()) < 2.0
        cosine = torch.nn.functional.cosine_similarity(x + 1e-30, y + 1e-30, dim=-1)
        nonzero = contraction_norm(x, kind)[:, 0] > 1e-6
        assert bool((cosine[nonzero] > 1.0 - 1e-5).all())


@pytest.mark.parametrize("kind", CONTRACTIONS)
def test_continuous_at_the_unit_boundary(kind):
    generator = torch.Generator().manual_seed(1)
    direction = torch.randn(500, 3, generator=generator, dtype=torch.float64)
    on = direction / contraction_norm(direction, kind)  # |x| = 1
    for eps in (1e-3, 1e-6):
        inside, outside = on * (1.0 - eps), on * (1.0 + eps)
        gap = (contract(outside, kind) - contract(inside, kind)).abs().max()
        assert float(gap) <= 2.5 * eps * float(on.abs().max())  # Lipschitz: no jump
    # the radial derivative d|y|/d|x| = 1/|x|^2 is 1 on both sides of the boundary
    h = 1e-7
    for r in (1.0 - 1e-4, 1.0 + 1e-4):
        slope = (
            contraction_norm(contract(on * (r + h), kind), kind)
            - contraction_norm(contract(on * r, kind), kind)
        ) / h
        torch.testing.assert_close(slope, torch.full_like(slope, 1.0 / max(r, 1.0) ** 2))


@pytest.mark.parametrize("kind", CONTRACTIONS)
def test_radial_stretch_is_the_inverse_derivative(kind):
    generator = torch.Generator().manual_seed(2)
    direction = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    unit = direction / contraction_norm(direction, kind)
    for m in (1.2, 1.5, 1.9):
        h = 1e-6
        far = contraction_norm(uncontract(unit * (m + h), kind), kind)
        near = contraction_norm(uncontract(unit * m, kind), kind)
        expected = ((far - near) / h)[:, 0]
        torch.testing.assert_close(radial_stretch(unit * m, kind), expected, rtol=1e-4, atol=0)
        closed_form = torch.full_like(expected, 1.0 / (2.0 - m) ** 2)
        torch.testing.assert_close(expected, closed_form, rtol=1e-4, atol=0)


def test_unknown_contraction_is_refused():
    with pytest.raises(ValueError, match="available: linf, l2"):
        contract(torch.zeros(1, 3), "cube")


# ----------------------------------------------------------------------------- the sampler

LO, HI = torch.full((3,), -1.0), torch.full((3,), 1.0)


def inside_rays(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    origins = (torch.rand(count, 3, generator=generator) * 2.0 - 1.0) * 0.9  # inside the box
    directions = torch.randn(count, 3, generator=generator)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return origins, directions * (0.5 + torch.rand(count, 1, generator=generator))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_inner=st.integers(1, 40),
    n_outer=st.integers(1, 40),
    perturb=st.booleans(),
    near=st.floats(0.0, 0.3),
)
def test_unbounded_samples_are_monotone_and_split_at_the_box(seed, n_inner, n_outer, perturb, near):
    origins, directions = inside_rays(64, seed)
    generator = torch.Generator().manual_seed(seed)
    t = unbounded_samples(origins, directions, LO, HI, near, n_inner, n_outer, perturb, generator)
    assert t.shape == (64, n_inner + n_outer)
    assert bool(torch.isfinite(t).all())
    assert bool((t[:, 1:] >= t[:, :-1]).all())  # monotone
    assert float(t.min()) >= near - 1e-6  # float32
    _, t_exit = box_interval(origins, directions, LO, HI, near, math.inf)
    assert bool((t[:, n_inner - 1] <= t_exit + 1e-5).all())  # the box part ends at the exit
    assert bool((t[:, n_inner] >= t_exit - 1e-5).all())  # the rest lies beyond it
    points = origins[:, None] + t[..., None] * directions[:, None]  # [R, S, 3]
    inside = points.abs().amax(-1) <= 1.0 + 1e-4
    crosses = t_exit > near  # else the ray left the box before near: its box part is empty
    assert bool(inside[crosses, :n_inner].all())
    assert bool((~inside[:, n_inner + 1 :]).all() if n_outer > 1 else True)


def test_unbounded_samples_cover_near_to_infinity_evenly_in_disparity():
    origins = torch.zeros(3, 3)
    directions = torch.eye(3)  # from the centre: exit at t = 1
    near, n_inner, n_outer = 0.1, 9, 1000
    t = unbounded_samples(origins, directions, LO, HI, near, n_inner, n_outer, False)
    middles = (torch.arange(n_inner) + 0.5) / n_inner
    torch.testing.assert_close(t[:, :n_inner], (near + (1.0 - near) * middles).expand(3, -1))
    disparity = 1.0 / t[:, n_inner:]  # [R, n_outer]: the bin middles of [0, 1/t_exit]
    expected = 1.0 - (torch.arange(n_outer) + 0.5) / n_outer
    torch.testing.assert_close(disparity, expected.expand(3, -1), rtol=1e-5, atol=1e-6)
    assert float(t[:, 0].max()) < near + 0.1  # starts at near ...
    assert float(t[:, -1].min()) >= 1999.0  # ... and reaches 2 n_outer box exits out
    # jittered: every bin is covered (u -> 1 in the last bin is t -> infinity)
    generator = torch.Generator().manual_seed(0)
    rays = 4000
    o, d = torch.zeros(rays, 3), torch.tensor([[1.0, 0.0, 0.0]]).expand(rays, 3)
    t = unbounded_samples(o, d, LO, HI, near, 1, 2, True, generator)
    assert float(t[:, 0].min()) < near + 0.01 and float(t[:, 0].max()) > 0.99
    assert float(t[:, 1].min()) < 1.01 and float(t[:, 1].max()) > 1.99  # disparity 1 .. 1/2
    assert float(t[:, 2].min()) < 2.02 and float(t[:, 2].max()) > 1000.0  # 1/2 .. 0


def test_unbounded_samples_of_rays_outside_or_missing_the_box():
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, 5.0, 3.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # through, and past it
    t = unbounded_samples(origins, directions, LO, HI, 0.5, 4, 4, False)
    assert bool((t[0, 1:] > t[0, :-1]).all()) and bool((t[1, 1:] >= t[1, :-1]).all())
    # through: uniform from near (outside the box too) to the exit at t = 4, then disparity
    torch.testing.assert_close(t[0, :4], 0.5 + 3.5 * (torch.arange(4) + 0.5) / 4)
    torch.testing.assert_close(t[0, 4], torch.tensor(4.0 / 0.875))
    assert bool((t[1, :4] == 0.5).all())  # misses: the box part collapses onto near
    assert float(t[1, 4]) >= 0.5
