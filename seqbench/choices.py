"""Names the command line offers, kept free of heavy imports so that ``--help`` is instant.

The library modules build their registries from these same tuples; the cells and the tasks are
listed by their registries (seqbench.cells.registry, seqbench.tasks.registry), which plugins
extend.
"""

IMPLS = ("builtin", "hand")
NONLINEARITIES = ("tanh", "relu", "leaky_relu", "elu", "linear")
DEVICES = ("auto", "cpu", "cuda")
INITS = ("default", "xavier", "he", "orthogonal", "identity", "irnn")
NORMS = ("none", "layer", "layer_split", "batch", "batch_recurrent")
CLIP_MODES = ("norm", "value")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
#: what ``seqbench run --probe`` measures at each probe step: the gradient against the lag
#: (seqbench.grads, the default) and the dynamics measures (seqbench.dynamics.records.MEASURES)
PROBES = ("gradient", "lyapunov", "jacobian", "sensitivity")

#: where commands write (and then read) results when no path is given. Not "results": in a
#: checkout of seqbench that folder holds the committed reference results, which a newcomer's
#: first runs must not append to (README, Quick start).
DEFAULT_OUT = "seqbench-results"
