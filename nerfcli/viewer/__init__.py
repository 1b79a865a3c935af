"""`nerf view`: a trained model, or one still training, in the browser (viser), and camera
paths made there. Sits between the cli and the evaluation layer."""
