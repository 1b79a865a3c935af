"""The `nerf inspect-poses` reports: llff (an LLFF capture: dataclasses, checks), scene (a
Blender or transforms.json capture) and what they share (report)."""
