import os

import numpy as np
import pytest
import torch

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from nca_edge.config import CAConfig  # noqa: E402
from nca_edge.model import CAModel  # noqa: E402


@pytest.fixture
def cfg():
    return CAConfig()


@pytest.fixture
def random_model(cfg):
    """A CA with non-trivial weights (the real init zeroes the last layer)."""
    torch.manual_seed(1)
    m = CAModel(cfg)
    torch.nn.init.normal_(m.update2.weight, std=0.2)
    torch.nn.init.normal_(m.update2.bias, std=0.05)
    return m


@pytest.fixture
def digit_pixels():
    """Four synthetic 'digits' [4, 28, 28] in [0, 1]: strokes of varied shape, plus faint pixels."""
    g = np.zeros((4, 28, 28), dtype=np.float32)
    g[0, 5:23, 12:15] = 1.0  # a '1'
    g[1, 6:9, 6:22] = 0.8
    g[1, 6:22, 19:22] = 0.9  # a '7'
    g[2, 8:20, 8:11] = 0.7
    g[2, 8:20, 17:20] = 0.7
    g[2, 8:11, 8:20] = 0.7
    g[2, 17:20, 8:20] = 0.7  # a '0'
    g[3, 0:4, 0:28] = 0.6  # touches the border (zero padding matters)
    g[:, 3, 3] = 0.05  # faint, not alive, but visible to neighbours through the pixel channel
    return torch.from_numpy(g)
