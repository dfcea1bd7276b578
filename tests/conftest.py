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


@pytest.fixture(autouse=True)
def keep_denormals(monkeypatch):
    """Commands run in this process (CliRunner) would flush denormals to zero for the whole
    process (seqbench.denormals), and other code relies on them: hypothesis refuses to draw floats
    when 5e-324 compares as 0. In-process commands keep them; tests/test_denormals.py checks the
    flushing in subprocesses with their own environment."""
    monkeypatch.setenv("SEQBENCH_DENORMALS", "keep")
    yield
    if torch.set_flush_denormal(False):  # undo a flush that happened anyway (e.g. force=True)
        from seqbench import denormals

        denormals._state = "keep"


@pytest.fixture(autouse=True, scope="session")
def interrupts_reach_the_tests():
    """A shell starts its background jobs (`cmd &`, `nohup`) with SIGINT ignored, and seqbench
    respects an inherited SIG_IGN (README, guarantees): the tests that send Ctrl-C to a run, here
    or in a child process, need it to arrive, so the session installs Python's own handler
    (children then start with the default disposition). The tests of the inherited SIG_IGN set
    it themselves."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
