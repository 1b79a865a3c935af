"""`nerf sfm`: photos or a video -> COLMAP model and poses with pycolmap (pipeline: the run;
inputs: checks and the commit; colmap: the pycolmap stages; video: frames; transforms: the
transforms.json writer; align: Umeyama alignment for the tests and benches)."""
