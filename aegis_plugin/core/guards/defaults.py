"""The guards' defaults, stdlib only: the plugin's options (CPython 3.9, in Pants) and the guards tool (its own
resolve) share them."""
from __future__ import annotations

SEVERITIES = ("low", "medium", "high", "critical")
# What serves training or development, not inference.
DENY_PYTHON = (
    "jupyter", "jupyterlab", "jupyter-*", "notebook", "ipykernel", "ipython", "ipywidgets", "nbconvert", "nbformat",
    "mlflow", "mlflow-skinny", "wandb", "tensorboard", "tensorboardx", "comet-ml", "neptune", "neptune-client",
    "clearml", "aim", "dvc", "datasets", "kaggle", "pytest", "black", "ruff", "mypy", "pylint", "cython",
    "pybind11", "cmake", "ninja", "scons",
)
DENY_DEBIAN = (
    "gcc", "gcc-[0-9]", "gcc-[0-9][0-9]", "g++", "g++-[0-9]*", "cpp", "cpp-[0-9]", "cpp-[0-9][0-9]", "gfortran*",
    "clang*", "llvm*", "binutils*", "make", "cmake", "build-essential", "*-dev", "git", "python3-pip",
)
