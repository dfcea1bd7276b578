"""Developer sessions: ``nox -l`` lists them.

Each session installs the CPU build of torch first (an unpinned torch pulls a multi-GB CUDA build).
"""

import nox

nox.options.sessions = ["lint", "tests"]
TORCH = "torch==2.13.0"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (the same command CI runs)."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "seqbench", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Time the cells (hand-written vs built-in, probe cost, T -> 2T) and append results/bench.csv.

    Arguments after ``--`` go to ``seqbench bench``, e.g. ``nox -s bench -- --cell lstm -T 1000``.
    Timings on a shared machine are noisy: compare the ratios, which are measured in one run.
    """
    session.install(TORCH)
    session.install("-e", ".")
    session.run("seqbench", "bench", *session.posargs)
