"""particles.theory.sharpness: dense and matrix-free paths against jax.hessian and each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles
from particles import theory as T


def _w_hessian_max(problem, W):
    d = W.shape[0]
    H = jax.jit(jax.hessian(particles.weight_loss))(W, problem).reshape(d * d, d * d)
    return np.linalg.eigvalsh(np.asarray(H))[-1]


@pytest.mark.parametrize("N,M,d", [(5, 4, 3), (3, 3, 6)])
def test_dense_and_lanczos_match_autodiff_hessian(N, M, d):
    key = jax.random.PRNGKey(N * 100 + d)
    prob = particles.random_sphere(key, N, M, d)
    W = 2.0 * jax.random.normal(jax.random.fold_in(key, 1), (d, d))
    S = particles.weight_scores(prob, W)
    ref = _w_hessian_max(prob, W)
    grams = particles.Problem.from_grams(prob.G_E, prob.G_U, prob.p, prob.targets, S0=S)
    # Lanczos on the embeddings' structure for one shape and on bare Grams for the other: each
    # Lanczos program is a compilation of its own, and both structures are covered.
    lanczos = prob if N == 5 else grams
    for p_, method in ((prob, "dense"), (grams, "dense"), (lanczos, "lanczos")):
        got = float(T.sharpness(p_, S, method=method))
        assert abs(got / ref - 1) <= 1e-8, f"{method} (E given: {p_.E is not None}): {got} vs {ref}"


def test_lanczos_restarts_on_larger_problem():
    # N M = 144 > iters = 32: needs restarted Lanczos to reach the dense value.
    key = jax.random.PRNGKey(7)
    prob = particles.random_sphere(key, 12, 12, 5)
    S = 3.0 * jax.random.normal(key, (12, 12))
    dense = float(T.sharpness(prob, S, method="dense"))
    lanczos = float(T.sharpness(prob, S, method="lanczos"))
    assert abs(lanczos / dense - 1) <= 1e-8, (lanczos, dense)


def test_orthogonal_problem_without_factors():
    # Block-diagonal Hessian: lambda_max = max_x p_x lambda_max(diag(P_x) - P_x P_x^T).
    # (N, M) = (8, 6) as in the clustered test below, which reuses this compilation.
    p = np.asarray(particles.zipf(8, 1.0))
    S = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (8, 6)))
    P = np.exp(S) / np.exp(S).sum(1, keepdims=True)
    ref = max(p[x] * np.linalg.eigvalsh(np.diag(P[x]) - np.outer(P[x], P[x]))[-1] for x in range(8))
    prob = particles.orthogonal(p, M=6)
    for method in ("dense", "lanczos"):
        # tol bounds the estimated relative error of lambda; 1e-12 asks for 1e-10 with margin.
        assert abs(float(T.sharpness(prob, S, method=method, tol=1e-12)) / ref - 1) <= 1e-10


def test_vmap_over_trajectory_scores_and_two_class_form():
    prob = particles.two_particles(0.95, 0.75)
    traj = particles.gd(prob, 10.0, 20, save_scores=True)
    lam = T.sharpness(prob, traj.scores)
    assert lam.shape == (21,)
    one = np.array([float(T.sharpness(prob, s)) for s in traj.scores[::5]])
    assert np.max(np.abs(lam[::5] - one)) <= 1e-14
    lz = np.asarray(T.sharpness(prob, traj.scores, method="lanczos"))
    assert np.max(np.abs(lz / lam - 1)) <= 1e-8
    assert np.max(np.abs(T.two_class_sharpness(prob, traj.scores) - lam)) <= 1e-12
    assert abs(lam[0] - T.two_particles_sharpness0(0.95, 0.75)) <= 1e-14
    ratio = T.stability_ratio(prob, traj.scores, 10.0)
    assert np.max(np.abs(ratio - 10.0 * lam / 2)) <= 1e-14


def test_bad_inputs_raise():
    prob = particles.two_particles(0.5, 0.75)
    with pytest.raises(ValueError, match="method='power'"):
        T.sharpness(prob, jnp.zeros((2, 2)), method="power")
    with pytest.raises(ValueError, match="S has shape"):
        T.sharpness(prob, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="lr="):
        T.stability_ratio(prob, jnp.zeros((2, 2)), -1.0)
    with pytest.raises(ValueError, match="M=3"):
        T.two_class_sharpness(particles.orthogonal(np.ones(3) / 3), jnp.zeros((3, 3)))


# ---------------------------------------------------------------- restarts that restart
def _dense_top(prob, S):
    return float(T.sharpness(prob, S, method="dense"))


def test_restarts_are_needed_and_work():
    # N M = 144 and a 6-vector basis: one cycle is far from converged (its estimate is checked
    # below), so the answer depends on the thick restarts; compared with dense eigh.
    key = jax.random.PRNGKey(7)
    prob = particles.random_sphere(key, 12, 12, 5)
    S = 3.0 * jax.random.normal(key, (12, 12))
    dense = _dense_top(prob, S)
    with pytest.warns(RuntimeWarning, match="restarts=1"):
        _, info1 = T.sharpness(prob, S, method="lanczos", iters=6, restarts=1, return_info=True)
    assert not info1["converged"] and info1["error"] > 1e-8
    got, info = T.sharpness(prob, S, method="lanczos", iters=6, restarts=40, return_info=True, key=3)
    assert info["converged"] and info["cycles"] > 1
    assert abs(float(got) / dense - 1) <= 1e-8, (float(got), dense, info)
    assert info["hvps"] > 6


def test_clustered_top_spectrum_float64_and_mixed():
    # Orthogonal embeddings: the Hessian is block diagonal, lambda = p_x lambda_max(Sigma_x) per
    # block; equal score rows and p_x = (1 + 1e-4 x) / Z make 8 top eigenvalues 1e-4 apart.
    # Mixed precision: float32 products find the Ritz pair, a float64 block of 2 checks it.
    N, M = 8, 6
    p = 1 + 1e-4 * np.arange(N)
    p /= p.sum()
    row = np.linspace(-1.0, 1.0, M)
    S = np.tile(row, (N, 1))
    P = np.exp(row) / np.exp(row).sum()
    ref = p.max() * np.linalg.eigvalsh(np.diag(P) - np.outer(P, P))[-1]
    prob = particles.orthogonal(p, M=M)
    for precision in ("float64", "mixed"):
        got, info = T.sharpness(prob, S, method="lanczos", restarts=60, precision=precision, return_info=True)
        assert info["converged"] and (info["hvps32"] > 0) == (precision == "mixed")
        assert abs(float(got) / ref - 1) <= 1e-8, (precision, float(got), ref, info)


# ------------------------------------------------------------- uniform rows: Kronecker
@pytest.mark.parametrize("N,M,d,grams", [(6, 5, 3, False), (5, 4, 3, True)])
def test_kronecker_at_uniform_rows(N, M, d, grams):
    # S[x] constant per row (not only S = 0): every softmax is uniform, lambda = lambda(A) lambda(B).
    key = jax.random.PRNGKey(N + 10 * d)
    prob = particles.random_sphere(key, N, M, d)
    if grams:
        prob = particles.Problem.from_grams(prob.G_E, prob.G_U, prob.p, prob.targets)
    S = np.repeat(np.linspace(-2.0, 3.0, N)[:, None], M, axis=1)
    ref = _dense_top(prob, S)
    for method in ("kronecker", "auto"):
        assert abs(float(T.sharpness(prob, S, method=method)) / ref - 1) <= 1e-12, method
    # A stack mixing uniform and trained rows: each gets its method.
    S2 = np.stack([S, np.asarray(jax.random.normal(key, (N, M))), np.zeros((N, M))])
    got = np.asarray(T.sharpness(prob, S2))
    want = [ref, _dense_top(prob, S2[1]), ref]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_kronecker_needs_uniform_rows():
    prob = particles.two_particles(0.5, 0.75)
    with pytest.raises(ValueError, match="method='kronecker'"):
        T.sharpness(prob, jnp.eye(2), method="kronecker")


def test_two_class_sharpness_with_correlated_outputs():
    # M = 2 with non-orthogonal u_0, u_1: |u_0 - u_1|^2 = G00 + G11 - 2 G01 (a wrong cross term
    # passes with U = I, where G01 = 0).
    key = jax.random.PRNGKey(11)
    prob = particles.random_sphere(key, 5, 2, 3)
    G = np.asarray(prob.G_U)
    assert abs(G[0, 1]) > 0.1
    S = 2.0 * jax.random.normal(key, (5, 2))
    ref = _dense_top(prob, S)
    assert abs(float(T.two_class_sharpness(prob, S)) / ref - 1) <= 1e-12


def test_integer_keys_and_more_bad_inputs():
    key = jax.random.PRNGKey(7)
    prob = particles.random_sphere(key, 12, 12, 5)
    S = 3.0 * jax.random.normal(key, (12, 12))
    a = float(T.sharpness(prob, S, method="lanczos", key=0))
    b = float(T.sharpness(prob, S, method="lanczos", key=jax.random.key(0)))
    assert a == b
    with pytest.raises(ValueError, match="precision='half'"):
        T.sharpness(prob, S, precision="half")
    with pytest.raises(ValueError, match="block=0"):
        T.sharpness(prob, S, block=0)
    with pytest.raises(ValueError, match="key=-1"):
        T.sharpness(prob, S, key=-1)
    # integer scores are read as the problem's floats: the same value, in float64
    small = particles.two_particles(0.5, 0.75)
    Si = np.array([[2, -1], [0, 3]])
    got = T.sharpness(small, Si, method="dense")
    assert got.dtype == np.float64 and float(got) == float(T.sharpness(small, Si.astype(float), method="dense"))


def test_block_restarts_are_needed_and_work():
    """The restart test with blocks of 2: each restart re-orthonormalises two residual vectors
    against the kept Ritz vectors and each other (Gram-Schmidt); compared with dense eigh."""
    key = jax.random.PRNGKey(7)
    prob = particles.random_sphere(key, 12, 12, 5)
    S = 3.0 * jax.random.normal(key, (12, 12))
    got, info = T.sharpness(prob, S, method="lanczos", iters=8, restarts=40, block=2, return_info=True, key=3)
    assert info["converged"] and info["cycles"] > 1
    assert abs(float(got) / _dense_top(prob, S) - 1) <= 1e-8, (float(got), info)


def test_auto_precision_warm_starts_in_float32_from_the_documented_size(monkeypatch):
    """`precision="auto"`: float64 scores of N M >= `_MIXED_MIN` entries (2^16; lowered here to
    keep the test small) take the float32 warm start (hvps32 > 0), smaller ones and float32
    scores do not; the answer agrees with float64 Lanczos to tol."""
    from particles.theory import _sharpness

    monkeypatch.setattr(_sharpness, "_MIXED_MIN", 48)
    p = 1 + 1e-2 * np.arange(8)
    prob = particles.orthogonal(p / p.sum(), M=6)
    S = jnp.tile(jnp.linspace(-1.0, 1.0, 6), (8, 1)) * (1 + jnp.arange(8)[:, None] / 8)
    got, info = T.sharpness(prob, S, method="lanczos", return_info=True)
    ref = T.sharpness(prob, S, method="lanczos", precision="float64")
    assert info["hvps32"] > 0 and abs(float(got) / float(ref) - 1) <= 1e-8
    small = particles.orthogonal(np.full(6, 1 / 6), M=6)  # N M = 36 < 48
    _, info = T.sharpness(small, S[:6], method="lanczos", return_info=True)
    assert info["hvps32"] == 0


# ------------------------------------------------ the Lanczos solver on known spectra
def _known(n, lam, seed):
    Q = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))[0]
    return (Q * lam) @ Q.T, Q


@pytest.mark.parametrize("b,scale", [(1, 1.0), (2, 1e3), (3, 1e-3)])
def test_block_lanczos_on_a_known_spectrum_with_restarts(b, scale):
    """λ = 1, 0.995, 0.99, then 57 values in [0, 0.9] (Q random orthogonal; all × 1e-3 to 1e3), a 12-vector basis:
    converging needs thick restarts. θ₁ against the known top eigenvalue to 1e-12 (the
    Kato-Temple bound at tol 1e-13 with gap 0.005); the top two Ritz vectors against the
    known eigenvectors, their error ~ r / gap (1e-8 allowed); orthonormal to 1e-12."""
    from particles.theory._lanczos import block_lanczos

    n = 60
    A, Q = _known(n, scale * np.concatenate([[1.0, 0.995, 0.99], np.linspace(0.0, 0.9, n - 3)]), 0)
    X0 = jnp.asarray(np.random.default_rng(b).normal(size=(b, n)))
    run = jax.jit(lambda X0: block_lanczos(lambda x: jnp.asarray(A) @ x, X0, 12, 4, 300, 1e-13, nvec=2))
    theta, info, top = run(X0)
    top = np.asarray(top)
    assert bool(info["converged"]) and int(info["cycles"]) > 1
    assert abs(float(theta) / scale - 1.0) <= 1e-12
    assert abs(abs(top[0] @ Q[:, 0]) - 1) <= 1e-10 and abs(abs(top[1] @ Q[:, 1]) - 1) <= 1e-8
    assert np.max(np.abs(top @ top.T - np.eye(2))) <= 1e-12
    assert float(info["error"]) <= 1e-13  # relative to θ₁, whatever the operator's scale
    # A full sweep opens every cycle; the steps between run local (semi-orthogonal) ones.
    assert int(info["cycles"]) <= int(info["sweeps"]) < int(info["hvps"]) // b


@pytest.mark.parametrize("b,scale", [(1, 1.0), (2, 1.0), (2, 1e4), (3, 1e-4)])
def test_block_lanczos_when_the_krylov_space_is_exhausted(b, scale):
    """A rank-3 operator in 40 dimensions: the Krylov space is invariant after 3 vectors, the
    block deflates (a vanishing direction is judged relative to the operator's scale, here
    1e-4 to 1e4), and θ₁ is the top eigenvalue (0.7 × scale) to round-off."""
    from particles.theory._lanczos import block_lanczos

    A, Q = _known(40, scale * np.concatenate([[0.7, 0.4, 0.2], np.zeros(37)]), 1)
    X0 = jnp.asarray(np.random.default_rng(5).normal(size=(b, 40)))
    theta, info, top = jax.jit(lambda X0: block_lanczos(lambda x: jnp.asarray(A) @ x, X0, 8, 3, 20, 1e-13))(X0)
    assert bool(info["converged"]) and abs(float(theta) / scale - 0.7) <= 1e-14
    assert float(info["error"]) <= 1e-13  # relative to θ₁, whatever the operator's scale
    assert abs(abs(float(np.asarray(top)[0] @ Q[:, 0])) - 1) <= 1e-12


def test_the_method_is_chosen_by_size_and_options_are_keywords():
    """Dense up to N·M = 1024 score entries, Lanczos beyond (it reports Hessian-vector
    products); `method` and the other options by name only."""
    key = jax.random.PRNGKey(2)
    for N, M, lanczos in ((32, 32, False), (40, 30, True), (30, 40, True)):
        prob = particles.random_sphere(key, N, M, 6)
        S = jax.random.normal(key, (N, M))
        _, info = T.sharpness(prob, S, return_info=True)
        assert (info.get("hvps", 0) > 0) == lanczos, (N, M, info)
    with pytest.raises(TypeError):
        T.sharpness(prob, S, "dense")


def test_gram_schmidt_orthonormalises_and_drops_what_has_nothing_left():
    """Rows made orthonormal to V and to each other (checked in numpy); a row inside span(V)
    up to 1e-9 of its own norm (here 1e6, so 1e-3 is left: below 1e-8 relative) becomes 0,
    and so does a zero row, instead of 0/0."""
    from particles.theory._lanczos import _gram_schmidt

    rng = np.random.default_rng(0)
    V = np.linalg.qr(rng.normal(size=(7, 2)))[0].T  # two orthonormal rows in R^7
    Q = rng.normal(size=(3, 7))
    out = np.asarray(_gram_schmidt(jnp.asarray(Q), jnp.asarray(V)))
    assert np.max(np.abs(out @ out.T - np.eye(3))) <= 1e-14 and np.max(np.abs(out @ V.T)) <= 1e-14
    # The span is the one numpy's QR of [V; Q] gives: the same rows up to sign.
    ref = np.linalg.qr(np.vstack([V, Q]).T)[0].T[2:]
    assert np.max(np.abs(np.abs(np.sum(out * ref, axis=1)) - 1)) <= 1e-13
    inside = 1e6 * V[0] + 1e-3 * out[0]
    dropped = np.asarray(_gram_schmidt(jnp.asarray(np.vstack([inside, np.zeros(7)])), jnp.asarray(V)))
    assert np.all(dropped == 0.0)


def test_lanczos_stops_on_the_kato_temple_bound_and_fills_its_basis():
    """A diagonal operator (3, 1, then 0.1 five times), two start vectors close to e₁ and e₂:
    after one block (2 products) the residual r ≈ 3e-4·θ is above tol = 1e-6, but the
    Kato-Temple bound r²/gap ≈ 1e-8·θ is below, so it stops there, θ₁ within 1e-6 of 3.
    With tol = 0 one cycle fills the whole m-vector basis: m products; each cycle opens with a
    sweep, so the counts are positive; the reported error is relative to θ₁ (here ~ 1e3)."""
    from particles.theory._lanczos import block_lanczos

    lam = jnp.asarray([3.0, 1.0] + [0.1] * 5)
    op = lambda x: lam * x  # noqa: E731
    X0 = jnp.asarray(np.eye(7)[:2] + 1e-4 * np.eye(7)[2:4])
    theta, info, _ = block_lanczos(op, X0, 6, 2, 5, 1e-6)
    assert int(info["hvps"]) == 2 and bool(info["converged"]) and abs(float(theta) - 3.0) <= 3e-6
    theta, info, _ = block_lanczos(op, jnp.ones((1, 7)), 5, 2, 1, 0.0)
    assert int(info["hvps"]) == 5 and int(info["cycles"]) == 1 and int(info["sweeps"]) >= 1
    big = lambda x: 1e3 * lam * x  # noqa: E731
    theta, info, _ = block_lanczos(big, jnp.ones((1, 7)), 6, 3, 50, 1e-10)
    assert bool(info["converged"]) and 0 < float(info["error"]) <= 1e-10
    assert abs(float(theta) / 3e3 - 1) <= 1e-10


def test_lanczos_options_are_kept_under_jit_and_on_tiny_problems():
    """`iters` is the basis size (in float64 no minimum applies), a Lanczos request on fewer
    than 4 scores is answered densely (no products), and the Lanczos path under the caller's
    jit returns the eager value; values against the autodiff Hessian in W (1e-8, as above)."""
    key = jax.random.PRNGKey(4)
    prob = particles.random_sphere(key, 6, 5, 4)
    W = jax.random.normal(jax.random.fold_in(key, 1), (4, 4))
    S = particles.weight_scores(prob, W)
    ref = _w_hessian_max(prob, W)
    with pytest.warns(RuntimeWarning, match="restarts=1"):  # one cycle cannot reach tol = 1e-300
        _, info = T.sharpness(prob, S, method="lanczos", iters=4, restarts=1, tol=1e-300, return_info=True)
    assert int(info["hvps"]) == 4
    eager = float(T.sharpness(prob, S, method="lanczos"))
    jitted = float(jax.jit(lambda S: T.sharpness(prob, S, method="lanczos"))(S))
    assert abs(eager / ref - 1) <= 1e-8 and abs(jitted / ref - 1) <= 1e-8
    tiny = particles.random_sphere(key, 1, 3, 2)
    W1 = jax.random.normal(jax.random.fold_in(key, 2), (2, 2))
    got, info = T.sharpness(tiny, particles.weight_scores(tiny, W1), method="lanczos", return_info=True)
    assert info.get("hvps", 0) == 0 and abs(float(got) / _w_hessian_max(tiny, W1) - 1) <= 1e-8


# ------------------------------------------------ the bound and problems with one embedding
def _one_sided(prob, keep):
    """The same Grams with only E (keep="E") or only U (keep="U") known."""
    return particles.Problem(p=prob.p, Y=prob.Y, G_E=prob.G_E, G_U=prob.G_U, S0=prob.S0,
                             E=prob.E if keep == "E" else None, U=prob.U if keep == "U" else None)


def test_sharpness_bound_is_the_top_eigenvalue_of_a_kronecker_product():
    """`sharpness_bound` = λ_max((Σ_x p_x e_x e_xᵀ) ⊗ UᵀU) / 2, built here as an explicit
    d²×d² matrix (numpy's kron; relative 1e-12: one float64 eigensolve of an O(1) matrix), the
    same from the Grams alone and with only one embedding known; non-uniform p, non-identity
    G_U. On the same problems the dense sharpness at random scores equals the autodiff Hessian
    in W (1e-8, as above) and stays below the bound."""
    key = jax.random.PRNGKey(11)
    prob = particles.random_sphere(key, 5, 4, 3, p=particles.zipf(5, 1.0))
    E, U, p = (np.asarray(a, np.float64) for a in (prob.E, prob.U, prob.p))
    ref = np.linalg.eigvalsh(np.kron((E * p[:, None]).T @ E, U.T @ U))[-1] / 2
    grams = particles.Problem.from_grams(prob.G_E, prob.G_U, prob.p, prob.targets)
    W = 2.0 * jax.random.normal(jax.random.fold_in(key, 1), (3, 3))
    S = particles.weight_scores(prob, W)
    lam = _w_hessian_max(prob, W)
    for q in (prob, grams, _one_sided(prob, "E"), _one_sided(prob, "U")):
        assert abs(T.sharpness_bound(q) / ref - 1) <= 1e-12, (q.E is None, q.U is None)
        got = float(T.sharpness(q, S, method="dense"))
        assert abs(got / lam - 1) <= 1e-8 and got <= ref * (1 + 1e-12), (q.E is None, q.U is None, got, lam)


def test_a_block_is_at_most_a_quarter_of_the_basis():
    """A basis of iters = 6 holds blocks of 6 // 4 = 1 vector (block = 2 asks for more; the
    products are counted one by one: an odd count), and restarts reach the dense value within
    1e-8 (as above); iters = 8 takes the two vectors asked for (an even count)."""
    key = jax.random.PRNGKey(5)
    prob = particles.random_sphere(key, 6, 5, 4)
    W = jax.random.normal(jax.random.fold_in(key, 1), (4, 4))
    S = particles.weight_scores(prob, W)
    got, info = T.sharpness(prob, S, method="lanczos", block=2, iters=6, restarts=200, tol=1e-12, return_info=True)
    assert bool(info["converged"]) and int(info["hvps"]) % 2 == 1
    assert abs(float(got) / _w_hessian_max(prob, W) - 1) <= 1e-8
    got, info = T.sharpness(prob, S, method="lanczos", block=2, iters=8, restarts=200, tol=1e-12, return_info=True)
    assert bool(info["converged"]) and int(info["hvps"]) % 2 == 0
    assert abs(float(got) / _w_hessian_max(prob, W) - 1) <= 1e-8


# ------------------------------------------------ the Lanczos solver's own parts
def test_ritz_values_come_from_the_active_block_only():
    """`_ritz(H, j)` against numpy's eigh of H[:j, :j] (1e-12): entries outside the active
    block (junk here) do not enter, and the top j Ritz vectors are zero outside it."""
    from particles.theory._lanczos import _ritz

    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 4))
    H = 5.0 * rng.normal(size=(7, 7))
    H[:4, :4] = A @ A.T  # PSD active block, junk elsewhere
    theta, Y = (np.asarray(a) for a in _ritz(jnp.asarray(H), 4))
    ref, vecs = np.linalg.eigh(H[:4, :4])
    np.testing.assert_allclose(theta[-4:], ref, rtol=0, atol=1e-12 * ref[-1])
    assert np.all(theta[:3] < 0)  # the inactive rows sit below the PSD spectrum
    assert np.all(Y[4:, -4:] == 0.0)
    np.testing.assert_allclose(np.abs(np.sum(Y[:4, -4:] * vecs, axis=0)), 1.0, atol=1e-12)


def test_converged_ritz_pairs_switch_on_full_reorthogonalisation():
    """An isolated eigenvalue at the bottom (0) and the top in a cluster (50 values in
    [1, 1.1]), all × 1e6: the bottom Ritz pair converges within about 6 products, long before
    the top one, and from then on every step sweeps the whole basis (Paige: orthogonality is
    lost along converged Ritz vectors at either end, the bottom one included). One 12-vector
    cycle at tol = 0: at least 5 sweeps (the opening one and those after the bottom pair
    converged); a 4-step cycle (nothing converged yet) sweeps once, at its opening."""
    from particles.theory._lanczos import block_lanczos

    lam = 1e6 * np.concatenate([[0.0], np.linspace(1.0, 1.1, 50)])
    A, _ = _known(51, lam, 2)
    op = lambda x: jnp.asarray(A) @ x  # noqa: E731
    X0 = jnp.ones((1, 51))
    _, info, _ = block_lanczos(op, X0, 12, 4, 1, 0.0)
    assert int(info["cycles"]) == 1 and int(info["hvps"]) == 12 and int(info["sweeps"]) >= 5
    _, info, _ = block_lanczos(op, X0, 4, 2, 1, 0.0)
    assert int(info["sweeps"]) == 1


def test_an_exact_eigenvector_converges_at_tol_zero():
    """A start vector that is an eigenvector of a diagonal operator: the residual is exactly
    0, so the error estimate 0 meets tol = 0 after one product (converged, θ exact)."""
    from particles.theory._lanczos import block_lanczos

    lam = jnp.asarray([2.0, 3.0, 0.5, 1.0])
    theta, info, _ = block_lanczos(lambda x: lam * x, jnp.asarray([[0.0, 1.0, 0.0, 0.0]]), 4, 2, 3, 0.0)
    assert bool(info["converged"]) and int(info["hvps"]) == 1 and float(theta) == 3.0


def test_reorthogonalisation_takes_a_second_pass_where_the_first_cancelled_most():
    """A block of norm 1e3 whose part outside span(V) has norm 0.1 (a 1e-4 cancellation):
    one classical Gram-Schmidt pass leaves components along V of about eps · 1e4 relative
    to what is left; the second pass (DGKS) brings them to round-off, ≤ 1e-14 of it. The
    removed components C add up to V Wᵀ and the result is the part outside (1e-12 of 1e3,
    round-off of the cancellation); a block mostly outside span(V) passes once, unchanged."""
    from particles.theory._lanczos import _reorthogonalise

    rng = np.random.default_rng(6)
    Q = np.linalg.qr(rng.normal(size=(50, 4)))[0].T
    V, out = Q[:3], Q[3]
    inside = rng.normal(size=3) @ V
    W = 1e3 * inside / np.linalg.norm(inside) + 0.1 * out
    got, C = (np.asarray(a) for a in _reorthogonalise(jnp.asarray(V), jnp.asarray(W[None]), jnp.zeros((3, 1))))
    assert np.max(np.abs(V @ got[0])) <= 1e-14 * np.linalg.norm(got[0])
    np.testing.assert_allclose(C[:, 0], V @ W, rtol=0, atol=1e-12 * 1e3)
    np.testing.assert_allclose(got[0], 0.1 * out, rtol=0, atol=1e-12 * 1e3)
    far = 0.1 * inside + 1e3 * out
    got, C = (np.asarray(a) for a in _reorthogonalise(jnp.asarray(V), jnp.asarray(far[None]), jnp.zeros((3, 1))))
    np.testing.assert_allclose(got[0], 1e3 * out, rtol=0, atol=1e-12 * 1e3)
