"""`nerf export`: geometry and cameras out of a checkpoint (mesh, point cloud, cameras), in the
capture's own coordinates (frames.py) or the training frame."""
