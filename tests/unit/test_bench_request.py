"""The benches' config request (bench/curve.py): a bench with the capture's own defaults
(cup, fox: no data flags) resolves, and its data flags are given."""

from argparse import Namespace
from pathlib import Path

from bench.curve import bench_request
from nerfcli.models.resolve import resolve_config


def _args(**overrides) -> Namespace:
    return Namespace(config=None, model="tensorf", overrides=[], minutes=0.5, **overrides)


def test_bench_without_data_flags_resolves(tiny_llff: Path):
    cfg = resolve_config(bench_request(tiny_llff, _args(), "cpu", None))
    assert cfg.train.max_minutes == 0.5
    assert cfg.data.scene_type == "forward"


def test_bench_data_flags_are_given(tiny_llff: Path):
    cfg = resolve_config(bench_request(tiny_llff, _args(), "cpu", {"llffhold": 3}))
    assert cfg.data.llffhold == 3
