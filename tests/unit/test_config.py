from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.config import available_presets, dump_yaml, from_dict, parse_override, to_dict
from nerfcli.errors import ConfigError
from nerfcli.models.config import Config, build_config, with_values


def test_defaults_are_the_reference_settings():
    cfg = Config()
    assert cfg.model.nerf.n_samples == 64 and cfg.model.nerf.n_importance == 64
    assert cfg.train.batch_rays == 1024 and cfg.train.lr == 5e-4
    assert cfg.train.lr_decay_steps == 250000 and cfg.train.lr_decay_rate == 0.1
    assert cfg.model.nerf.multires == 10 and cfg.model.nerf.multires_views == 4
    assert cfg.model.nerf.raw_noise_std == 1.0 and cfg.data.llffhold == 8


def test_presets_exist_and_chain():
    assert {"llff", "fern", "surround"} <= set(available_presets())
    fern = build_config("fern")
    assert fern.data.factor == 8 and fern.data.ndc
    surround = build_config("surround")
    assert surround.data.llff["spherify"] and not surround.data.ndc


def test_precedence_defaults_preset_set_flags(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("base: llff\ntrain:\n  lr: 0.002\n  iters: 10\n")
    base = {"train": {"lr": 0.1, "batch_rays": 7}}
    cfg = build_config(preset, ["train.iters=20"], base=base)
    assert cfg.train.lr == 0.002  # preset beats the base profile
    assert cfg.train.batch_rays == 7  # profile beats defaults
    assert cfg.train.iters == 20  # --set beats preset
    assert with_values(cfg, "train", iters=30).train.iters == 30  # flags beat --set


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown key 'lrate'.*valid keys:.*lr"):
        build_config(None, ["train.lrate=1"])
    with pytest.raises(ConfigError, match="unknown key 'optim'"):
        build_config(None, ["optim.lr=1"])


def test_type_errors_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="expected an integer"):
        build_config(None, ["train.iters=abc"])
    with pytest.raises(ConfigError, match="true or false"):
        build_config(None, ["data.ndc=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="loops"):
        build_config(loop)


def test_spherify_requires_no_ndc():
    from nerfcli.data.formats import check_options

    asked = build_config(None, ["data.llff.spherify=true"])
    with pytest.raises(ConfigError, match="ndc=false"):
        check_options(asked.data, "llff")
    allowed = build_config(None, ["data.llff.spherify=true", "data.ndc=false"])
    assert check_options(allowed.data, "llff")["spherify"] is True


def test_round_trip_through_dict_and_yaml():
    import yaml

    cfg = build_config("fern", ["model.tensorf.grid_init=[64, 64, 48]"])
    assert from_dict(Config, to_dict(cfg)) == cfg
    assert from_dict(Config, yaml.safe_load(dump_yaml(cfg))) == cfg


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=40))
def test_override_parser_never_crashes(text):
    """Any text is a valid override or a one-line ConfigError; a valid one names a real
    section.key and lands in the config."""
    try:
        cfg = build_config(None, [text])
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    key = text.split("=", 1)[0].strip()
    *sections, name = [part for part in key.split(".") if part]
    node = cfg
    for section in sections:
        node = getattr(node, section)
    assert hasattr(node, name)


@settings(max_examples=80, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["data", "train", "lr", "model", "x", "factor"]), inner, max_size=3
            )
        ),
        max_leaves=8,
    )
)
def test_random_config_documents_load_or_raise_config_error(doc):
    try:
        cfg = from_dict(Config, doc)
    except ConfigError:
        return
    # what loaded is what the document says, and writes back to itself
    assert from_dict(Config, to_dict(cfg)) == cfg
    for section, values in (doc if isinstance(doc, dict) else {}).items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    got = to_dict(cfg)[section][key]
                    assert got == value or value != value or isinstance(value, list), (key, got)


def test_parse_override_values_are_yaml():
    assert parse_override("train.lr=1e-3") == {"train": {"lr": 1e-3}}
    assert parse_override("model.nerf.skips=[2, 4]") == {"model": {"nerf": {"skips": [2, 4]}}}
