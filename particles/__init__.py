"""particles: the training dynamics of associative memories as interacting particles.

Importing the package turns on JAX's float64 mode (`jax_enable_x64`): margins grow like
log t and late GD updates fall below float32 resolution. float32 stays available through
`Problem.astype(jnp.float32)` (it warns).

The subpackages `particles.theory` (closed forms and reference solvers),
`particles.analysis` (theory against simulation, detectors, plots), `particles.transformer`
(the paper's Transformer experiments) and `particles.cli` (the command-line tools) load on
first use: `import particles` is enough to reach them.
"""

import importlib
import importlib.metadata

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import _source_tree  # noqa: E402,F401  (particles.analysis from a source checkout)
from ._dynamics import force as force, gd_step as gd_step, minibatch_weights as minibatch_weights  # noqa: E402
from ._flow import default_times as default_times, flow as flow  # noqa: E402
from ._gd import gd as gd, sgd as sgd  # noqa: E402
from ._geometry import (  # noqa: E402
    equicorrelated as equicorrelated,
    orthogonal as orthogonal,
    random_sphere as random_sphere,
    two_particles as two_particles,
    zipf as zipf,
)
from ._families import FAMILIES as FAMILIES  # noqa: E402
from ._geometry import frequencies as frequencies  # noqa: E402
from ._grid import paper_grid as paper_grid, two_particle_hitting_times as two_particle_hitting_times  # noqa: E402
from ._observables import (  # noqa: E402
    accuracy as accuracy,
    loss as loss,
    margins as margins,
    zero_one as zero_one,
)
from ._problem import PrecisionWarning as PrecisionWarning, Problem as Problem  # noqa: E402
from ._results import load as load, load_problem as load_problem, save as save  # noqa: E402
from ._schedule import log_steps as log_steps  # noqa: E402
from ._status import Status as Status  # noqa: E402
from ._cell import METRICS as METRICS, hitting_time as hitting_time  # noqa: E402
from ._sweep import Sweep as Sweep, expand_grid as expand_grid, sweep as sweep  # noqa: E402
from ._trajectory import Runs as Runs, Trajectory as Trajectory  # noqa: E402
from ._vocab import VocabTrajectory as VocabTrajectory, gd_vocab as gd_vocab, vocab_flops as vocab_flops  # noqa: E402
from ._weights import gd_weights as gd_weights, weight_loss as weight_loss, weight_scores as weight_scores  # noqa: E402

try:
    __version__ = importlib.metadata.version("particles-memory")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.2.0+src"

_SUBPACKAGES = ("analysis", "cli", "distributed", "events", "theory", "transformer")


def __getattr__(name: str):
    # Subpackages load on first use: `particles.theory` works after `import particles`
    # alone, and importing the package does not pay for scipy, optax or matplotlib.
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES))
