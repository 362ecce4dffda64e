"""Experiment 7: Transformers (paper-notes §4.7): the two-layer attention-only model of
Bietti et al. in the paper's setting, and the particle prediction of its W_O² memory
(`particles.transformer`; quick mode unless `--full`)."""

from __future__ import annotations

from . import Section

TITLE = "7. Transformers"


def run(ctx) -> Section:
    from particles import transformer

    from .. import transformer_figures, transformer_report_section

    result = transformer.reproduce(quick=not ctx.full, claims=ctx.claims, progress=ctx.progress)
    return Section(transformer_figures(result), transformer_report_section(result), result.summary())
