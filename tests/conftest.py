import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def correlated_gaussian(n, rho, d=1, seed=0):
    """d independent pairs (x_i, y_i) with correlation rho each; true MI = -d/2 log(1 - rho^2) nats."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    y = rho * x + np.sqrt(1 - rho**2) * r.normal(size=(n, d))
    return x, y, -0.5 * d * np.log(1 - rho**2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Many small torch ops: on a shared machine two spin-waiting threads are far slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
