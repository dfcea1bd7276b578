"""Hidden-state dynamics beyond the gradient norm: Lyapunov spectra, Jacobian singular values and
the curse of memory's parameter sensitivity (README, "Dynamics"; docs/references.md section 5.4).

- ``state``: a layer as a map s_t = f(s_{t-1}, x_t) (the cell's own ``step``, parameters held
  fixed; built-in modules through their hand twin), the conventions for the state;
- ``measures``: the Lyapunov spectrum by the QR method, singular values of Jacobian products and
  per-step spectral norms, the parameter sensitivity ||d h_t / d theta_rec||;
- ``records``: the measures on a task's sequences as long-format rows (``measure_at_init``,
  ``DYNAMICS_COLUMNS``, ``summarize``, ``read_dynamics``);
- ``curse``: the scalar closed forms and the memory scan (``curse_of_memory``).
"""

from seqbench.dynamics.curse import (  # noqa: F401
    curse_of_memory,
    scalar_sensitivity_variance,
    scalar_state_variance,
)
from seqbench.dynamics.measures import (  # noqa: F401
    EXACT_MAX_WIDTH,
    jacobian_products,
    lyapunov,
    sensitivity,
    step_norms,
)
from seqbench.dynamics.records import (  # noqa: F401
    DYNAMICS_COLUMNS,
    MEASURES,
    DynamicsSetup,
    Options,
    measure_at_init,
    measure_model,
    read_dynamics,
    summarize,
)
from seqbench.dynamics.state import LayerMap, hand_stack, hand_twin, layer_maps  # noqa: F401
