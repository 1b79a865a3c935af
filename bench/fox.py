"""Fox (instant-ngp transforms.json, 67 phone photos around a figurine in a room, OpenCV lens
distortion): held-out PSNR / SSIM (every 8th view) against training time, with the scene
type and factor `nerf train` picks without flags.

    .venv/bin/python -m bench.fox --minutes 10 --marks 2,5,10 --render-frames 0 --out bench/results/fox

See bench/curve.py for the options and what is recorded.
"""

from bench.curve import main

if __name__ == "__main__":
    main("fox", None)
