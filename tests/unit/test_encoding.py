from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.models.encoding import encoded_channels, positional_encoding
from nerfcli.models.reference import positional_encoding_reference


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


@pytest.mark.parametrize("batch", [(), (2,), (1, 2)])
@pytest.mark.parametrize("freqs", [0, 1, 4])
def test_fast_matches_reference_values_and_gradients_over_batch_shapes(batch, freqs):
    x = torch.randn(*batch, 5, 3, requires_grad=True)
    reference = positional_encoding_reference(x, freqs)
    upstream = torch.randn(reference.shape)
    (reference * upstream).sum().backward()
    grad_reference = x.grad.clone()
    x.grad = None
    fast = positional_encoding(x, freqs)
    (fast * upstream).sum().backward()
    assert fast.shape == (*batch, 5, encoded_channels(3, freqs))
    torch.testing.assert_close(fast, reference)
    torch.testing.assert_close(x.grad, grad_reference)
