"""What the demos' training scripts share: the Adam step and the weight grid that stored weights are rounded to,
so that CPU math differences cannot change the bytes of a retrained checkpoint."""
from __future__ import annotations

import numpy as np

WEIGHT_GRID = 4096


def quantize(value: np.ndarray) -> np.ndarray:
    """`value` rounded to the weight grid, as float32 (what the checkpoint stores)."""
    return (np.round(value * WEIGHT_GRID) / WEIGHT_GRID).astype(np.float32)


def adam_step(params: dict, grads: dict, moment1: dict, moment2: dict, step: int, learning_rate: float) -> None:
    """One Adam update (beta1 0.9, beta2 0.999, eps 1e-8) of each parameter that has a gradient, in place."""
    for name, grad in grads.items():
        moment1[name] = 0.9 * moment1[name] + 0.1 * grad
        moment2[name] = 0.999 * moment2[name] + 0.001 * grad * grad
        m_hat = moment1[name] / (1.0 - 0.9**step)
        v_hat = moment2[name] / (1.0 - 0.999**step)
        params[name] = params[name] - learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)
