"""Fern (LLFF, factor 8): held-out PSNR on views 0, 8, 16 at 504 x 378 against training time.

    .venv/bin/python -m bench.fern --minutes 10 --out bench/results/fern_tensorf_cpu
    .venv/bin/python -m bench.fern --model nerf --minutes 10 --eval-downscale 4

See bench/curve.py for the options and what is recorded.
"""

from bench.curve import main

if __name__ == "__main__":
    main("fern", "fern")
