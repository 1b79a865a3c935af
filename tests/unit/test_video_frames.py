"""render_frames' one-ahead rendering (evaluation/video.py `_rendered_ahead`): frames come in
order, the next one renders while the caller takes the current one, and a render's error
reaches the caller."""

from __future__ import annotations

import threading

import pytest

from nerfcli.evaluation.video import _rendered_ahead


def test_frames_come_in_order_and_the_next_renders_while_the_caller_works():
    started: list[int] = []
    second_started = threading.Event()

    def render_one(index: int):
        started.append(index)
        if index == 1:
            second_started.set()
        return index, threading.get_ident()

    frames = _rendered_ahead(render_one, 4)
    first, thread = next(frames)
    assert first == 0 and thread != threading.get_ident()  # rendered off the caller's thread
    # frame 1 renders while the caller still holds frame 0
    assert second_started.wait(5.0)
    assert [index for index, _ in frames] == [1, 2, 3]
    assert started == [0, 1, 2, 3]  # each once, in order
    assert list(_rendered_ahead(render_one, 0)) == []


def test_a_render_error_reaches_the_caller():
    def render_one(index: int):
        if index == 2:
            raise ValueError("frame 2 failed")
        return index

    frames = _rendered_ahead(render_one, 5)
    assert [next(frames), next(frames)] == [0, 1]
    with pytest.raises(ValueError, match="frame 2 failed"):
        next(frames)


def test_an_mp4_holds_every_frame_close_to_what_was_rendered(tmp_path):
    """VideoWriter's encoding (x264, crf 10, veryfast): every frame comes back, in order, within
    a few grey levels of the rendered one (smooth waves moving by frame)."""
    import imageio.v3 as iio
    import numpy as np
    import torch

    from nerfcli.evaluation.video import VideoWriter
    from nerfcli.metrics import psnr

    y, x = np.mgrid[0:96, 0:128]
    frames = [
        np.stack(
            [
                127.5 + 120 * np.sin((x + 4 * k) / 20),
                2.0 * y,
                127.5 + 120 * np.cos((x + y) / 30 + k),
            ],
            -1,
        ).astype(np.uint8)
        for k in range(6)
    ]
    writer = VideoWriter(tmp_path / "v.mp4", fps=10)
    for frame in frames:
        writer.append(frame)
    path = writer.close()
    back = np.stack(list(iio.imiter(path)))
    assert back.shape == (6, 96, 128, 3)
    scores = [
        psnr(torch.from_numpy(b / 255.0), torch.from_numpy(f / 255.0)) for b, f in zip(back, frames)
    ]
    assert min(scores) > 38.0, scores
    # the temp file beside it (fsutil.temp_path_beside: .v.mp4.*.mp4) was renamed into place
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
