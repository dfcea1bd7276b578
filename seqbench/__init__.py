"""seqbench: recurrent networks on synthetic long-dependency tasks, with gradient-vs-lag diagnostics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
