"""The guards `pants lint` and `package` run on a built image: the vulnerability gate and the pitfall rules."""
