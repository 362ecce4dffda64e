"""particles: the training dynamics of associative memories as interacting particles.

Importing the package turns on JAX's float64 mode (`jax_enable_x64`): margins grow like
log t and late GD updates fall below float32 resolution. float32 stays available through
`Problem.astype(jnp.float32)` (it warns).
"""

import importlib.metadata

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._flow import default_times as default_times, flow as flow
from ._grid import (
    hitting_time as hitting_time,
    paper_grid as paper_grid,
    two_particle_hitting_times as two_particle_hitting_times,
)
from ._integrate import (
    gd as gd,
    gd_weights as gd_weights,
    log_steps as log_steps,
    sgd as sgd,
    weight_loss as weight_loss,
    weight_scores as weight_scores,
)
from ._observables import (
    accuracy as accuracy,
    loss as loss,
    margins as margins,
    zero_one as zero_one,
)
from ._problem import (
    PrecisionWarning as PrecisionWarning,
    Problem as Problem,
    equicorrelated as equicorrelated,
    orthogonal as orthogonal,
    random_sphere as random_sphere,
    two_particles as two_particles,
    zipf as zipf,
)
from ._sweep import (
    Sweep as Sweep,
    SweepInterrupted as SweepInterrupted,
    expand_grid as expand_grid,
    sweep_gd as sweep_gd,
)
from ._trajectory import Trajectory as Trajectory
from ._vocab import VocabTrajectory as VocabTrajectory, gd_vocab as gd_vocab, vocab_flops as vocab_flops

try:
    __version__ = importlib.metadata.version("particles")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0+src"
