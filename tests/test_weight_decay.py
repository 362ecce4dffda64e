"""Weight decay in the particle simulator: exactly GD on W with decay (torch's SGD rule
W ← W − lr (∇L + λ W)), scores from outside W (`Problem.offset`) untouched."""

import jax
import numpy as np
import pytest

import particles as pt

from helpers import compilations


def _problem(seed=0, N=6, M=3, d=4):
    rng = np.random.default_rng(seed)
    E, U = rng.normal(size=(N, d)), rng.normal(size=(M, d))
    W0 = 0.3 * rng.normal(size=(d, d))
    problem = pt.Problem.from_embeddings(E, U, pt.zipf(N, 1.0), np.arange(N) % M, W0=W0)
    offset = rng.normal(size=(N, M))  # a direct path: scores not from W
    return problem.__class__(**{**{f: getattr(problem, f) for f in ("p", "Y", "G_E", "G_U", "E", "U", "W0")},
                                "S0": problem.S0 + offset, "offset": offset,
                                "structure_E": problem.structure_E, "structure_U": problem.structure_U}), W0, offset


def _numpy_gd(problem, W0, offset, lr, wd, steps, batches=None):
    """W ← W − lr (Uᵀ (P − Y)ᵀ diag(w) E + wd W) with S = E Wᵀ Uᵀ + offset, in numpy."""
    E, U, p, Y = (np.asarray(a) for a in (problem.E, problem.U, problem.p, problem.Y))
    W = W0.copy()
    for k in range(steps):
        S = E @ W.T @ U.T + offset
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        w = p if batches is None else batches[k]
        W = W - lr * (U.T @ (P - Y).T @ np.diag(w) @ E + wd * W)
    return E @ W.T @ U.T + offset


@pytest.mark.parametrize("wd", [0.0, 1e-4, 0.05])
def test_gd_with_weight_decay_is_gd_on_w(wd):
    problem, W0, offset = _problem()
    traj = pt.gd(problem, 0.7, 40, weight_decay=wd)
    # 40 steps of the same map in two orders of operations: round-off, ~1e-14.
    np.testing.assert_allclose(traj.final_scores, _numpy_gd(problem, W0, offset, 0.7, wd, 40), atol=1e-12)
    assert traj.metadata.get("weight_decay") == (None if wd == 0 else wd)


def test_sgd_with_weight_decay_is_sgd_on_w():
    problem, W0, offset = _problem(1)
    traj = pt.sgd(problem, 0.5, 25, 3, 7, weight_decay=0.02)
    batches = [np.asarray(pt.minibatch_weights(jax.random.fold_in(jax.random.key(7), k), problem.p, 3))
               for k in range(25)]
    np.testing.assert_allclose(traj.final_scores, _numpy_gd(problem, W0, offset, 0.5, 0.02, 25, batches), atol=1e-12)


def test_a_new_weight_decay_does_not_recompile_and_bad_values_are_refused():
    problem, _, _ = _problem(2)
    pt.gd(problem, 0.5, 10, weight_decay=0.01)
    with compilations() as compiled:
        pt.gd(problem, 0.6, 10, weight_decay=0.02)
    assert compiled == []
    for bad in (-1.0, float("nan"), [0.1, 0.2]):
        with pytest.raises(ValueError, match="weight_decay"):
            pt.gd(problem, 0.5, 10, weight_decay=bad)
