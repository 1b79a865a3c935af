"""The `nerf inspect-poses` reports: llff (an LLFF capture: dataclasses, checks) and scene (a
Blender or transforms.json capture)."""
