"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The tests' tensors are small: a second thread gains nothing, and on a busy machine OpenMP
    threads waiting for a core make a step many times slower. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
