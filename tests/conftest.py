"""Shared test setup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tests train tiny models: they run as fast on one CPU thread as on two, and one thread does
    not stall when other processes hold the cores (OpenMP threads wait for each other), so the
    suite stays fast on shared CI. Module scope covers module-scoped fixtures that train too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
