"""The `nerf inspect-poses` reports: what they share (report: rows, checks, --json) and the
report on a loaded Scene (scene: the Blender and transforms.json formats' `inspect`). LLFF's,
which checks poses_bounds.npy rows the loader refuses, is its format's own
(nerfcli.data.formats.llff_inspect)."""
