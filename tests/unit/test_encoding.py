from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.models.encoding import (
    encoded_channels,
    positional_encoding,
    positional_encoding_reference,
)


def test_channel_counts_match_the_paper():
    assert encoded_channels(3, 10) == 63
    assert encoded_channels(3, 4) == 27
    x = torch.rand(5, 3)
    assert positional_encoding(x, 10).shape == (5, 63)
    assert positional_encoding(x, 4).shape == (5, 27)


def test_order_is_input_then_sin_cos_per_frequency():
    x = torch.tensor([[0.3, -0.2, 0.1]])
    out = positional_encoding(x, 2)
    assert torch.allclose(out[0, :3], x[0])
    assert torch.allclose(out[0, 3:6], torch.sin(x[0]))
    assert torch.allclose(out[0, 6:9], torch.cos(x[0]))
    assert torch.allclose(out[0, 9:12], torch.sin(2 * x[0]))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10), st.integers(1, 5))
def test_fast_matches_reference(freqs, batch):
    x = torch.randn(batch, 7, 3)
    assert torch.allclose(positional_encoding(x, freqs), positional_encoding_reference(x, freqs))
