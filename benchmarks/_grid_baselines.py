"""Baselines for the paper's time-to-accuracy grid: batched numpy and a per-run PyTorch loop.

Both train W (2 x 2) from zero on the two-particle problem as the paper's scripts do
(S = E W^T U^T with U = I), so they share no code with `particles`' score-space kernels.
They follow the conventions of `particles.events`: step k counts k GD updates and step 0 is
the start (0 when the start is already fully right); a token with p = 0 is outside the loss
and does not count; argmax ties go to the first class; -1 means never fully accurate within
`steps`.
"""

from __future__ import annotations

import numpy as np


def embeddings(corr: np.ndarray) -> np.ndarray:
    """E of shape (B, 2, 2): e_1 = (1, 0), e_2 = (corr, sqrt(1 - corr^2))."""
    B = corr.shape[0]
    E = np.zeros((B, 2, 2))
    E[:, 0, 0] = 1.0
    E[:, 1, 0] = corr
    E[:, 1, 1] = np.sqrt(np.maximum(1.0 - corr**2, 0.0))
    return E


def numpy_hitting_times(corr, p1, lr, steps: int) -> np.ndarray:
    """All runs at once in numpy (float64): W <- W - lr * sum_x p_x (softmax(W e_x) - y_x) e_x^T."""
    corr, p1, lr = (np.asarray(a, np.float64).ravel() for a in (corr, p1, lr))
    B = corr.shape[0]
    E = embeddings(corr)
    P = np.stack([p1, 1 - p1], axis=1)  # (B, 2)
    Y = np.eye(2)[None]
    W = np.zeros((B, 2, 2))
    first = np.full(B, -1, np.int64)
    S = np.zeros((B, 2, 2))

    def full(S):
        # argmax with ties to index 0; a token with p = 0 does not count
        return (((S[:, 0, 0] >= S[:, 0, 1]) | (P[:, 0] == 0)) & ((S[:, 1, 1] > S[:, 1, 0]) | (P[:, 1] == 0)))

    first[full(S)] = 0
    for k in range(1, steps + 1):
        Z = np.exp(S - S.max(axis=2, keepdims=True))
        R = (Z / Z.sum(axis=2, keepdims=True) - Y) * P[:, :, None]
        W -= lr[:, None, None] * np.matmul(R.transpose(0, 2, 1), E)  # grad = R^T diag(p) E (U = I)
        S = np.matmul(E, W.transpose(0, 2, 1))  # S[x, y] = (W e_x)_y
        first[(first < 0) & full(S)] = k
    return first


def numpy_margin_map(corr, p1, lr, steps: int) -> np.ndarray:
    """The same closed-form two-particle margin map as particles' kernel, batched in numpy."""
    corr, p1, lr = (np.asarray(a, np.float64).ravel() for a in (corr, p1, lr))
    p2 = 1 - p1
    a11, a12, a22, a21 = 2 * lr * p1, 2 * lr * corr * p2, 2 * lr * p2, 2 * lr * corr * p1
    m1 = np.zeros_like(corr)
    m2 = np.zeros_like(corr)
    first = np.full(corr.shape[0], -1, np.int64)
    full = lambda m1, m2: ((m1 >= 0) | (p1 == 0)) & ((m2 > 0) | (p2 == 0))  # noqa: E731
    first[full(m1, m2)] = 0
    with np.errstate(over="ignore"):
        for k in range(1, steps + 1):
            f1 = 1 / (1 + np.exp(m1))
            f2 = 1 / (1 + np.exp(m2))
            m1, m2 = m1 + (a11 * f1 - a12 * f2), m2 + (a22 * f2 - a21 * f1)
            first[(first < 0) & full(m1, m2)] = k
    return first


def torch_hitting_times(corr, p1, lr, steps: int, *, dtype=None) -> np.ndarray:
    """One run at a time with torch.optim.SGD on W, as the paper's scripts (float64)."""
    import torch

    torch.set_num_threads(1)  # 2x2 problems: threads only add overhead
    dtype = torch.float64 if dtype is None else dtype
    corr, p1, lr = (np.asarray(a, np.float64).ravel() for a in (corr, p1, lr))
    targets = torch.arange(2)
    out = np.full(corr.shape[0], -1, np.int64)
    for i in range(corr.shape[0]):
        E = torch.tensor(embeddings(corr[i : i + 1])[0], dtype=dtype)
        p = torch.tensor([p1[i], 1 - p1[i]], dtype=dtype)
        W = torch.zeros(2, 2, dtype=dtype, requires_grad=True)
        opt = torch.optim.SGD([W], lr=float(lr[i]))
        counts = p > 0  # a token with p = 0 is outside the loss
        with torch.no_grad():
            if bool(((torch.argmax(E @ W.T, dim=1) == targets) | ~counts).all()):
                out[i] = 0
                continue
        for k in range(1, steps + 1):
            opt.zero_grad()
            S = E @ W.T
            loss = (p * torch.nn.functional.cross_entropy(S, targets, reduction="none")).sum()
            loss.backward()
            opt.step()
            with torch.no_grad():
                if bool(((torch.argmax(E @ W.T, dim=1) == targets) | ~counts).all()):
                    out[i] = k
                    break  # the answer is known; later steps cannot change it
    return out
