"""Cup (LLFF + COLMAP, a hand-held walk around a cup on a table, 77 views): held-out PSNR /
SSIM (every 8th view) against training time, with the scene type and factor `nerf train`
picks without flags (unbounded, per-view COLMAP cameras); `--set data.factor=8` for 100 x 75.

    .venv/bin/python -m bench.cup --minutes 15 --render-frames 0 --out bench/results/cup

See bench/curve.py for the options and what is recorded.
"""

from bench.curve import main

if __name__ == "__main__":
    main("cup", None)
