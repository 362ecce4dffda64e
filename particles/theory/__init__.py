"""particles.theory: the closed forms and reference solvers of paper-notes §3.

Pure-JAX formulas (jit-, vmap- and grad-able, float64-safe) for orthogonal embeddings and
the two-particle system, the sharpness of the population Hessian, and reference solvers
(numpy/scipy, eager) for the max-margin W, the cross-entropy minimizer and the best 0-1 loss
(exact by a mixed-integer program up to 40 inputs, certified bounds beyond). Every formula,
rate and validity condition is checked in tests/test_theory*.py against simulation
(`particles.gd`, `particles.flow`), an independent integration or an independent solver.
"""

from ._lambertw import (
    lambertw as lambertw,
    lambertw_exp as lambertw_exp,
    log_lambertw_exp as log_lambertw_exp,
)
from ._orthogonal import (
    orthogonal_flow_margin as orthogonal_flow_margin,
    orthogonal_gd_margin as orthogonal_gd_margin,
    orthogonal_gd_margin_bound as orthogonal_gd_margin_bound,
    orthogonal_loss as orthogonal_loss,
    orthogonal_loss_asymptote as orthogonal_loss_asymptote,
    orthogonal_asymptote_error as orthogonal_asymptote_error,
    orthogonal_asymptote_valid as orthogonal_asymptote_valid,
    orthogonal_margin_asymptote as orthogonal_margin_asymptote,
)
from ._separable import (
    MaxMargin as MaxMargin,
    max_margin as max_margin,
    separable_loss_asymptote as separable_loss_asymptote,
)
from ._sharpness import (
    hessian_operator as hessian_operator,
    sharpness as sharpness,
    sharpness_bound as sharpness_bound,
    stability_ratio as stability_ratio,
    two_class_sharpness as two_class_sharpness,
)
from ._two_particles import (
    two_particles_coefficients as two_particles_coefficients,
    two_particles_margin_map as two_particles_margin_map,
    two_particles_first_step as two_particles_first_step,
    two_particles_forgets as two_particles_forgets,
    two_particles_gd_margins as two_particles_gd_margins,
    two_particles_loss_asymptote as two_particles_loss_asymptote,
    two_particles_margin_asymptote as two_particles_margin_asymptote,
    two_particles_margins_from_gamma as two_particles_margins_from_gamma,
    two_particles_sharpness0 as two_particles_sharpness0,
    two_particles_spike_lr as two_particles_spike_lr,
    two_particles_step as two_particles_step,
    two_particles_wedge_angle as two_particles_wedge_angle,
)
from ._underparameterized import (
    Solution as Solution,
    ce_minimizer as ce_minimizer,
    gradient_norm as gradient_norm,
    top_frequency_scores as top_frequency_scores,
)
from ._zero_one import (
    best_zero_one as best_zero_one,
    zero_one_gap as zero_one_gap,
)
