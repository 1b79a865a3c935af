"""train.precision, the TF32 scope, the renamed train.amp, and device selection per rank."""

from __future__ import annotations

import warnings

import pytest
import torch

from nerfcli.config import to_dict
from nerfcli.errors import ConfigError
from nerfcli.models.config import build_config, config_from_checkpoint_dict
from nerfcli.training import distributed
from nerfcli.training.device import select_device
from nerfcli.training.precision import autocast, autocast_dtype, peak_memory_gb, tf32_scope

CPU = torch.device("cpu")


def test_auto_and_fp32_train_in_fp32_on_the_cpu():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autocast_dtype("auto", CPU) is None
        assert autocast_dtype("fp32", CPU) is None


def test_bf16_where_unsupported_warns_and_falls_back_to_fp32():
    with pytest.warns(UserWarning, match="not supported on cpu"):
        assert autocast_dtype("bf16", CPU) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_auto_is_bf16_exactly_where_the_gpu_supports_it():
    gpu = torch.device("cuda")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert autocast_dtype("auto", gpu) is expected
    assert autocast_dtype("fp32", gpu) is None


def test_autocast_for_fp32_changes_nothing():
    x = torch.randn(4, 4)
    with autocast(CPU, None):
        assert (x @ x).dtype == torch.float32


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="train.precision must be auto, fp32 or bf16"):
        build_config(None, ["train.precision=fp16"])
    with pytest.raises(ConfigError, match="device_rays_gb"):
        build_config(None, ["train.device_rays_gb=-1"])


@pytest.mark.parametrize("enabled", [True, False])
def test_tf32_scope_sets_and_restores_the_flags(enabled):
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    with tf32_scope(enabled):
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (enabled, enabled)
    assert (matmul.allow_tf32, cudnn.allow_tf32) == before
    with pytest.raises(RuntimeError), tf32_scope(enabled):
        raise RuntimeError("inside the loop")
    assert (matmul.allow_tf32, cudnn.allow_tf32) == before


def test_peak_memory_is_reported_only_on_cuda():
    assert peak_memory_gb(CPU) is None


@pytest.mark.parametrize("amp, precision", [(True, "auto"), (False, "fp32")])
def test_checkpoints_with_the_old_train_amp_key_still_load(amp, precision):
    data = to_dict(build_config(None))
    del data["train"]["precision"]
    data["train"]["amp"] = amp
    assert config_from_checkpoint_dict(data).train.precision == precision


def test_train_amp_is_no_longer_a_setting():
    with pytest.raises(ConfigError, match="unknown key 'amp'"):
        build_config(None, ["train.amp=false"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        select_device("cuda", local_rank=1)


def test_auto_never_picks_mps():
    assert select_device("auto").type in ("cpu", "cuda")


def test_one_process_is_a_single_rank(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init(CPU) is distributed.SINGLE
    device, ranks = distributed.join("cpu")
    assert device == CPU and ranks.world == 1 and ranks.is_main


def test_a_world_without_a_rendezvous_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR/MASTER_PORT are unset: start with torchrun"):
        distributed.init(CPU)


@pytest.mark.parametrize("raw, ok", [("", 60.0), ("5", 5.0), ("0", None), ("soon", None)])
def test_collective_timeout_from_the_environment(monkeypatch, raw, ok):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, raw)
    if ok is None:
        with pytest.raises(ConfigError, match=distributed.TIMEOUT_ENV):
            distributed.timeout_seconds()
    else:
        assert distributed.timeout_seconds() == ok
