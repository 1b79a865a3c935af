"""Lego (Blender, --half-res 400 x 400): held-out PSNR / SSIM on every 8th test view (25 of
200, the reference's testskip) against training time; `nerf eval` scores all 200.

    .venv/bin/python -m bench.lego --minutes 10 --render-frames 40 --out bench/results/lego

See bench/curve.py for the options and what is recorded.
"""

from bench.curve import main

if __name__ == "__main__":
    main("lego", "blender", data={"half_res": True})
