"""One torch thread per test process: the tensors are tiny and `pytest -n 2` already uses both cores."""

import torch


def pytest_configure(config):
    torch.set_num_threads(1)
