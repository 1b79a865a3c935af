"""TensoRF's fast no-grad render in world coordinates (models/tensorf/frozen.py: the baked
frozen field, the occupancy grid, early termination) against the plain path it replaces
(`RenderPolicy(fast=False)`, the path training takes), per scene kind: a box and an unbounded
(contracted) scene. Speed is measured in bench/render_speed.py, never here.

Tolerances: the plain path reads density only inside the alpha mask, and the fast one only in
occupied cells, which `update_alpha_mask` makes the same cells; the colour is decoded in
float32 here (`float32_decoder`). Without early termination the two composites differ only by
float rounding (the plain path's cumulative product of S factors against the fast path's exp
of a sum: ~S float32 roundings, S <= 60 here, asserted 1e-4). With termination below T, each
ray loses at most T of weight after the point where it stops: opacity within T, and the colour
within T where the colour quantiles land on the same samples (they do unless a quantile
boundary falls within T of the cdf, which the mean over rays bounds: asserted 1e-3)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import nerfcli.models.tensorf.frozen as frozen_module
from nerfcli.data.rays import make_rays
from nerfcli.render import compiled
from nerfcli.render.march import MarchSettings
from nerfcli.render.samplers import EvenDepths, UnboundedDepths
from tests.unit.test_tensorf import make_model
from tests.unit.test_tensorf_unbounded import blob_model as unbounded_blob_model
from tests.unit.test_tensorf_unbounded import inside_rays


@pytest.fixture(autouse=True)
def float32_decoder(monkeypatch):
    monkeypatch.setattr(frozen_module, "decoder_dtype", lambda device: torch.float32)


def box_blob_model(seed: int, white: bool = False):
    """A box scene (world coordinates) with density in a few blobs, empty elsewhere."""
    # the estimator on in training (off by default: measured slower per CPU minute on lego)
    overrides = ["model.tensorf.density_activation=relu", "model.tensorf.estimator_every=16"]
    if white:
        overrides.append("data.background=white")
    model = make_model(*overrides, ndc=False, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for plane, line in zip(model.field.density_planes, model.field.density_lines, strict=True):
            plane.copy_(torch.randn(plane.shape, generator=generator) - 1.0)
            line.copy_(torch.rand(line.shape, generator=generator))
            plane[0, 0, 2, 3] = 6.0
            line[0, 0, 3, 0] = 1.0
    return model


def outside_rays(count: int, seed: int):
    """Rays of a camera 3 units out on +z, looking at the box (the cube [-1, 1]^3)."""
    c2w = torch.eye(4)[:3].clone()
    c2w[:, 3] = torch.tensor([0.1, -0.2, 3.0])
    rays = make_rays(20, 24, 18.0, c2w, ndc=False).reshape(-1)
    generator = torch.Generator().manual_seed(seed)
    return rays[torch.randint(0, len(rays), (count,), generator=generator)]


def render_both(model, rays, near, far):
    fast_policy = model.policy
    with torch.no_grad():
        fast = model.render_rays(rays, near, far, train=False)
        counts = model.last_sample_counts
        model.policy = dataclasses.replace(fast_policy, fast=False)
        plain = model.render_rays(rays, near, far, train=False)
    model.policy = fast_policy
    return fast, plain, counts


def unbounded_column_model(seed: int):
    """An unbounded scene with blobs, and a column of density along z in front of the camera
    of `inside_rays` (grid x, y about 0.08, 0.05) from z 0 down, so its rays meet density."""
    model = unbounded_blob_model(seed)
    with torch.no_grad():
        model.field.density_planes[0][0, 0, 4:6, 4:7] = 3.0
        model.field.density_lines[0][0, 0, :3, 0] = 1.0
    return model


SCENES = {
    "box": (lambda seed, white: box_blob_model(seed, white), outside_rays, 0.5, 6.0),
    "unbounded": (lambda seed, white: unbounded_column_model(seed), inside_rays, 0.05, 10.0),
}


def take_path(monkeypatch, path: str) -> None:
    """compiled: the compiled march (nerfcli.render.compiled, the default where numba is
    installed); the tensor march: march, every bundle marched (a limit above any fraction of
    candidate blocks); dense, every bundle declined by the march (a limit below any), so
    `render_dense` renders it."""
    if path == "compiled":
        assert compiled.available()  # numba is a dependency
        monkeypatch.setattr(frozen_module, "COMPILED", True)
        return
    monkeypatch.setattr(frozen_module, "COMPILED", False)
    limit = {"march": 1.01, "dense": -1.0}[path]
    monkeypatch.setattr(
        frozen_module,
        "MarchSettings",
        lambda **kwargs: MarchSettings(dense_limit=limit, **kwargs),
    )


@pytest.mark.parametrize("path", ["compiled", "march", "dense"])
@pytest.mark.parametrize("kind", list(SCENES))
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("white", [False, True])
def test_fast_world_render_is_the_plain_path_without_termination(
    monkeypatch, path, kind, seed, white
):
    monkeypatch.setattr(frozen_module, "STOP_TRANSMITTANCE", 0.0)
    take_path(monkeypatch, path)
    build, make_rays_fn, near, far = SCENES[kind]
    model = build(seed, white)
    model.update_alpha_mask()
    model.eval()
    rays = make_rays_fn(300, seed)
    fast, plain, counts = render_both(model, rays, near, far)
    assert float((fast.rgb - plain.rgb).abs().max()) < 1e-4
    assert float((fast.opacity - plain.opacity).abs().max()) < 1e-4
    assert float((fast.depth - plain.depth).abs().max()) < 1e-3 * max(1.0, far)
    assert counts[1] < counts[0]  # the samples in empty cells got no density
    assert bool(plain.opacity.max() > 0.5)  # the rays do meet density


@pytest.mark.parametrize("path", ["compiled", "march", "dense"])
@pytest.mark.parametrize("kind", list(SCENES))
def test_fast_world_render_with_termination_is_within_its_bound(monkeypatch, path, kind):
    take_path(monkeypatch, path)
    build, make_rays_fn, near, far = SCENES[kind]
    model = build(4, False)
    model.update_alpha_mask()
    model.eval()
    rays = make_rays_fn(400, 4)
    fast, plain, _ = render_both(model, rays, near, far)
    stop = frozen_module.STOP_TRANSMITTANCE
    assert float((fast.opacity - plain.opacity).abs().max()) <= stop + 1e-5
    assert float((fast.rgb - plain.rgb).abs().mean()) < 1e-3


def test_frozen_field_follows_training_and_loading():
    """The snapshot is dropped by train(), a grad render and load_state_dict, and rebuilt."""
    model = box_blob_model(0)
    model.eval()
    rays = outside_rays(64, 0)
    with torch.no_grad():
        model.render_rays(rays, 0.5, 6.0, train=False)
    first = model._frozen
    assert first is not None
    model.train()
    assert model._frozen is None
    model.eval()
    with torch.no_grad():
        model.render_rays(rays, 0.5, 6.0, train=False)
    assert model._frozen is not None and model._frozen is not first
    model.render_rays(rays, 0.5, 6.0, train=True)  # under grad: the plain path, snapshot gone
    assert model._frozen is None
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.render_rays(rays, 0.5, 6.0, train=False)
        model.load_state_dict(state)
    assert model._frozen is None


def test_ndc_scenes_keep_their_own_fast_path():
    model = make_model()
    rays = make_rays(6, 8, 7.0, torch.eye(4)[:3], ndc=True).reshape(-1)
    with torch.no_grad():
        model.render_rays(rays, 0.0, 1.0, train=False)
    assert model._frozen is None


def test_estimator_is_updated_in_training_and_keeps_every_significant_cell():
    model = box_blob_model(3)
    assert not model.estimator.built
    model.before_step(model.cfg.estimator_every)  # an update step
    assert model.estimator.built
    assert 0.0 < model.estimator.occupied_fraction() < 1.0
    with torch.no_grad():  # the exact cells: what update_alpha_mask marks at these weights
        model.update_alpha_mask()
    assert torch.equal(model.estimator.occupied, model.field.alpha_mask)
    # training reads density only in the estimator's cells
    model.field.alpha_mask = torch.zeros(0, dtype=torch.bool)
    rays = outside_rays(256, 3)
    model.render_rays(rays, 0.5, 6.0, train=True)
    all_samples, with_density, _ = model.last_sample_counts
    model.estimator.resize(model.estimator.cells)  # empty: every cell
    model.render_rays(rays, 0.5, 6.0, train=True)
    assert with_density < model.last_sample_counts[1]


def test_estimator_round_trips_and_older_checkpoints_load():
    model = box_blob_model(5)
    model.before_step(model.cfg.estimator_every)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert "estimator.occupied" in state
    restored = make_model(ndc=False, seed=9)
    restored.adapt_to_state_dict(dict(state))
    restored.load_state_dict(state)
    assert torch.equal(restored.estimator.occupied, model.estimator.occupied)
    assert restored.estimator.cells == model.estimator.cells
    # a checkpoint from before the estimator: it loads, the estimator is not built, and the
    # fast render derives the occupancy from the field
    old = {k: v for k, v in state.items() if not k.startswith("estimator.")}
    older = make_model(ndc=False, seed=9)
    older.adapt_to_state_dict(old)
    older.load_state_dict(old)
    assert not older.estimator.built
    older.eval()
    rays = outside_rays(128, 5)
    with torch.no_grad():
        out = older.render_rays(rays, 0.5, 6.0, train=False)
    assert bool(torch.isfinite(out.rgb).all())
    assert older.frozen_field().occupied_fraction < 1.0


def test_the_estimator_is_off_in_training_by_default():
    model = make_model(ndc=False, seed=3)
    assert model.cfg.estimator_every == 0
    for step in (0, 16, 32):
        model.before_step(step)
    assert not model.estimator.built  # the fast render derives its occupancy from the field


def test_ndc_models_never_update_the_estimator():
    model = make_model("model.tensorf.estimator_every=16")
    model.before_step(model.cfg.estimator_every)
    assert not model.estimator.built


def fog_model(seed: int, factor: float):
    """A box scene with density in every cell: every plane and line factor set to `factor`
    (ReLU density, so sigma grows with it), the alpha mask updated, in eval mode."""
    model = make_model("model.tensorf.density_activation=relu", ndc=False, seed=seed)
    with torch.no_grad():
        for plane, line in zip(model.field.density_planes, model.field.density_lines, strict=True):
            plane.fill_(factor)
            line.fill_(factor)
    model.update_alpha_mask()
    model.eval()
    return model


def test_a_fog_takes_the_dense_path(monkeypatch):
    """Density in every cell (a nearly untrained model, or an unbounded scene whose background
    fills the contracted grid): the march declines, `render_dense` reads every sample, and the
    render is the plain path's to the rounding of an exp of a sum against a product (module
    docstring; termination off here). The tensor march's choice (the compiled one walks every
    ray alike: test_the_compiled_march_renders_a_fog)."""
    monkeypatch.setattr(frozen_module, "STOP_TRANSMITTANCE", 0.0)
    monkeypatch.setattr(frozen_module, "COMPILED", False)
    model = fog_model(seed=6, factor=0.3)
    assert model.frozen_field().occupied_fraction == 1.0
    rays = outside_rays(200, 6)
    dense_calls = []
    render_dense = frozen_module.render_dense

    def counted(*args, **kwargs):
        dense_calls.append(len(args[1]))
        return render_dense(*args, **kwargs)

    monkeypatch.setattr(frozen_module, "render_dense", counted)
    fast, plain, counts = render_both(model, rays, 0.5, 6.0)
    assert dense_calls == [200]
    assert counts[1] == counts[0]  # every cell occupied, nothing terminates at T = 0
    assert float((fast.rgb - plain.rgb).abs().max()) < 1e-4
    assert float((fast.opacity - plain.opacity).abs().max()) < 1e-4
    assert bool(plain.opacity.max() > 0.5)


def test_dense_path_stops_rays_once_opaque(monkeypatch):
    """A fog thick enough to stop a ray that meets it in its first slabs (4 samples here):
    rays read no slab past the one where their transmittance fell below the threshold, and
    the render stays within it."""
    monkeypatch.setattr(frozen_module, "DENSE_SLAB", 4)
    monkeypatch.setattr(frozen_module, "COMPILED", False)
    model = fog_model(seed=7, factor=3.0)
    rays = outside_rays(200, 7)
    fast, plain, counts = render_both(model, rays, 0.5, 6.0)
    assert counts[1] < counts[0] // 2  # most slabs never read
    stop = frozen_module.STOP_TRANSMITTANCE
    assert float((fast.opacity - plain.opacity).abs().max()) <= stop + 1e-5
    assert float((fast.rgb - plain.rgb).abs().max()) < 1e-3


@pytest.mark.parametrize("factor", [0.3, 3.0])
def test_the_compiled_march_renders_a_fog(monkeypatch, factor):
    """Every cell occupied: the compiled march reads every sample up to each ray's termination
    (a thin fog, termination off: the plain path to the rounding of an exp of a sum against a
    product; a thick one: most samples never read, the render within the threshold)."""
    take_path(monkeypatch, "compiled")
    thin = factor < 1.0
    if thin:
        monkeypatch.setattr(frozen_module, "STOP_TRANSMITTANCE", 0.0)
    model = fog_model(seed=6 if thin else 7, factor=factor)
    rays = outside_rays(200, 6 if thin else 7)
    fast, plain, counts = render_both(model, rays, 0.5, 6.0)
    assert model.frozen_field().grid is not None  # the compiled march's grid was built
    assert bool(plain.opacity.max() > 0.5)
    if thin:
        assert counts[1] == counts[0]
        assert float((fast.rgb - plain.rgb).abs().max()) < 1e-4
        assert float((fast.opacity - plain.opacity).abs().max()) < 1e-4
    else:
        assert counts[1] < counts[0] // 2
        stop = frozen_module.STOP_TRANSMITTANCE
        assert float((fast.opacity - plain.opacity).abs().max()) <= stop + 1e-5
        assert float((fast.rgb - plain.rgb).abs().max()) < 1e-3


# ----------------------------------------------------------------------------- baked appearance


def random_appearance(model, seed: int) -> None:
    """Appearance factors of the size a trained model has (N(0, 1)), so the features matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for factor in [*model.field.app_planes, *model.field.app_lines]:
            factor.copy_(torch.randn(factor.shape, generator=generator))


def points_in(cells: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Grid coords [count, 3] drawn uniformly inside the cells [Cz, Cy, Cx] marked True."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.nonzero(cells)  # [K, 3] (z, y, x)
    pick = index[torch.randint(0, len(index), (count,), generator=generator)]
    size = torch.tensor(cells.shape[::-1], dtype=torch.float32)  # (Cx, Cy, Cz)
    return (pick.flip(1).float() + torch.rand(count, 3, generator=generator)) / size * 2.0 - 1.0


@pytest.mark.parametrize("fraction", [0.05, 0.6])  # vertices baked one by one / by z-slices
def test_the_appearance_table_is_the_factors_trilinear_read(fraction):
    """A trilinear read of the baked vertices is the factors' own value (each mode is bilinear
    in its plane and linear in its line): equal to the table's half precision (11 significant
    bits: 2^-11 of the largest feature, times the 8 weights' sum of 1), in occupied cells; a
    point in a cell no occupied cell touches is reported missing."""
    model = make_model(ndc=False, seed=3)
    random_appearance(model, 3)
    model.eval()
    frozen = model.frozen_field()
    generator = torch.Generator().manual_seed(4)
    cells = torch.rand(frozen._cells.shape, generator=generator) < fraction
    planes, lines = frozen._factors
    assert tuple(r - 1 for r in model.field.resolution[::-1]) == tuple(cells.shape)
    table = frozen_module.AppearanceVertices(cells, planes, lines, frozen.basis)
    inside = points_in(cells, 4000, 5)
    features, missing = table.read(inside)
    exact = frozen.features(inside)
    scale = float(exact.abs().max())
    assert not bool(missing.any())
    assert float((features - exact).abs().max()) <= 2.0**-10 * scale
    lonely = ~frozen_module.vertices_of(cells)  # vertices touching no occupied cell
    if bool(lonely.any()):
        z, y, x = (int(i) for i in torch.nonzero(lonely)[0])
        size = torch.tensor(lonely.shape[::-1], dtype=torch.float32) - 1.0
        vertex = torch.tensor([[x, y, z]], dtype=torch.float32) / size * 2.0 - 1.0
        assert bool(table.read(vertex)[1].all())


def test_the_compiled_table_read_is_the_tensor_one(monkeypatch):
    """AppearanceVertices.read through the compiled texels (compiled.trilinear_texels) and
    through tensor operations: the same features and the same missing points, for points
    inside cells, on the grid's faces and corners, outside it (clamped) and on vertices no
    occupied cell touches."""
    model = make_model(ndc=False, seed=8)
    random_appearance(model, 8)
    model.eval()
    frozen = model.frozen_field()
    cells = torch.rand(frozen._cells.shape, generator=torch.Generator().manual_seed(9)) < 0.3
    planes, lines = frozen._factors
    table = frozen_module.AppearanceVertices(cells, planes, lines, frozen.basis)
    generator = torch.Generator().manual_seed(10)
    coords = torch.cat(
        [
            points_in(cells, 2000, 11),
            torch.rand(2000, 3, generator=generator) * 2.4 - 1.2,  # some outside: clamped
            torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]),
        ]
    )
    compiled_features, compiled_missing = table.read(coords)
    monkeypatch.setattr(compiled, "trilinear_texels", lambda *args: None)
    features, missing = table.read(coords)
    assert bool(missing.any()) and not bool(missing.all())
    assert torch.equal(compiled_missing, missing)
    # the weights are rounded to the table's half precision from float64 here, from float32
    # there: a weight may land one half ulp (2^-11) apart, so a feature moves by up to that
    # much of the largest feature
    scale = float(features.abs().max())
    assert float((compiled_features - features).abs().max()) <= 2.0**-10 * scale
    assert float((compiled_features - features).abs().mean()) <= 2.0**-14 * scale


@pytest.mark.parametrize("kind", list(SCENES))
def test_colour_from_the_table_renders_the_plain_image(monkeypatch, kind):
    """Once baked (at once here: TABLE_AFTER = 0), colour comes from the table, and points the
    table lacks from the factors: the fast render stays the plain path's, to the decoder's
    response to half-precision features (asserted 2e-3) plus the termination bound."""
    monkeypatch.setattr(frozen_module, "TABLE_AFTER", 0.0)
    build, make_rays_fn, near, far = SCENES[kind]
    model = build(8, False)
    random_appearance(model, 8)
    model.update_alpha_mask()
    model.eval()
    rays = make_rays_fn(300, 8)
    fast, plain, _ = render_both(model, rays, near, far)
    assert model.frozen_field().table is not None
    assert bool(plain.opacity.max() > 0.5)
    assert float((fast.rgb - plain.rgb).abs().max()) < 2e-3 + frozen_module.STOP_TRANSMITTANCE
    # and the fallback: a point outside every occupied cell is read from the factors
    frozen = model.frozen_field()
    empty = ~frozen_module.vertices_of(frozen._cells)
    if bool(empty.any()):
        z, y, x = (int(i) for i in torch.nonzero(empty)[0])
        size = torch.tensor(empty.shape[::-1], dtype=torch.float32) - 1.0
        point = torch.tensor([[x, y, z]], dtype=torch.float32) / size * 2.0 - 1.0
        view = torch.tensor([[0.0, 0.0, 1.0]])
        with torch.no_grad():
            from_table = frozen.colour(point, view)
            frozen.table = None
            frozen._table_fits = False
            from_factors = frozen.colour(point, view)
        assert torch.allclose(from_table, from_factors, atol=1e-6)


def test_the_bake_finds_the_used_vertices_once(monkeypatch):
    """The vertices the table needs are found once per bake (vertices_of: a 3-D max pool,
    0.26 s on a 192^3 grid), counted to judge the bake and then baked, and the table is the
    one a fresh build from the same cells makes."""
    monkeypatch.setattr(frozen_module, "TABLE_AFTER", 0.0)
    calls = []
    real = frozen_module.vertices_of

    def counted(cells):
        calls.append(cells.shape)
        return real(cells)

    monkeypatch.setattr(frozen_module, "vertices_of", counted)
    model = make_model(ndc=False, seed=5)
    random_appearance(model, 5)
    model.eval()
    frozen = model.frozen_field()
    coords = torch.zeros(4, 3)
    with torch.no_grad():
        frozen.colour(coords, torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3))
    assert frozen.table is not None
    assert len(calls) == 1
    planes, lines = frozen._factors
    fresh = frozen_module.AppearanceVertices(frozen._cells, planes, lines, frozen.basis)
    assert torch.equal(fresh.row_of, frozen.table.row_of)
    assert torch.equal(fresh.rows, frozen.table.rows)


def test_prepare_renders_bakes_the_table_before_the_first_colour_where_it_pays():
    """An eval or a video tells the model its pixels first: the table is baked then, when a
    colour a pixel reaches TABLE_AFTER colours a vertex, and not for a few pixels."""
    model = make_model(ndc=False, seed=5)
    random_appearance(model, 5)
    model.eval()
    model.prepare_renders(10)  # far fewer than 2 colours a vertex
    assert model.frozen_field().table is None
    vertices = int(frozen_module.vertices_of(model.frozen_field()._cells).sum())
    model.prepare_renders(int(frozen_module.TABLE_AFTER * vertices))
    assert model.frozen_field().table is not None
    model.train()  # training drops the frozen field; a training model is not prepared
    model.prepare_renders(10**9)
    assert model._frozen is None


# ----------------------------------------------------------------------------- compiled march


@pytest.mark.parametrize("kind", ["box", "unbounded"])
def test_depth_recipes_are_the_plain_samples_in_the_loop_too(monkeypatch, kind):
    """The no-grad depths of world rays as a recipe per ray (EvenDepths for a box scene,
    UnboundedDepths): rows() are sample_depths' own, and the compiled loop's own depths
    (computed per ray in float32) the same bits: its render equals the render of the
    materialised rows exactly (termination off, so every read sample's depth enters the depth
    and weights; colour from the factors in both, never from a table baked between them)."""
    monkeypatch.setattr(frozen_module, "STOP_TRANSMITTANCE", 0.0)
    monkeypatch.setattr(frozen_module, "TABLE_AFTER", float("inf"))
    if kind == "box":  # a thin fog: every sample read
        model, rays, near, far = fog_model(seed=3, factor=0.3), outside_rays(300, 3), 0.5, 6.0
    else:
        model, near, far = unbounded_column_model(3), 0.05, 10.0
        model.update_alpha_mask()
        model.eval()
        rays = inside_rays(300, 3)
    policy = model.policy
    with torch.no_grad():
        recipe = policy.world_depths(model.field, rays, near, far)
        rows = policy.sample_depths(model.field, rays, near, far, False, None)
        assert isinstance(recipe, {"box": EvenDepths, "unbounded": UnboundedDepths}[kind])
        assert torch.equal(recipe.rows(), rows)
        frozen = model.frozen_field()
        assert frozen.grid is not None

        def render(depths):
            return frozen_module.render_world_fast(frozen, rays, depths, 8, False)

        (from_recipe, counts), (from_rows, _) = render(recipe), render(rows)
    assert bool(from_rows.opacity.max() > 0.5)
    assert counts[1] > 2 * len(rays)  # samples read along the rays
    for name in ("rgb", "opacity", "depth"):
        assert torch.equal(getattr(from_recipe, name), getattr(from_rows, name)), name


def test_without_numba_the_tensor_march_renders(monkeypatch):
    """Where numba is not installed (`compiled.available()` False) the frozen field has no
    compiled grid and the tensor march renders the plain path's image."""
    monkeypatch.setattr(compiled, "available", lambda: False)
    monkeypatch.setattr(frozen_module, "STOP_TRANSMITTANCE", 0.0)
    model = box_blob_model(5)
    model.update_alpha_mask()
    model.eval()
    rays = outside_rays(300, 5)
    fast, plain, counts = render_both(model, rays, 0.5, 6.0)
    assert model.frozen_field().grid is None
    assert counts[1] < counts[0]
    assert float((fast.rgb - plain.rgb).abs().max()) < 1e-4
    assert bool(plain.opacity.max() > 0.5)
