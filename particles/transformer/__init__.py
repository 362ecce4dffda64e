"""The paper's Transformer validation (§7): Bietti et al.'s two-layer attention-only model.

The faithful setting of Bietti et al. (2023): the tiny-shakespeare bigram task with
in-context triggers ([`DataConfig.paper`][], [`sample`][]), the authors' simplified model
and initialisation ([`ModelConfig`][]), SGD with momentum and weight decay ([`Config`][],
[`train`][]), and the particle prediction of the W_O^2 memory ([`memory_problem`][],
[`predict`][]). [`run`][] does one experiment and returns a [`Run`][];
[`reproduce`][] runs the paper's experiments.
"""

from ._data import (
    DataConfig as DataConfig,
    char_stats as char_stats,
    from_counts as from_counts,
    sample as sample,
    statistics as statistics,
)
from ._model import (
    ModelConfig as ModelConfig,
    Params as Params,
    attention as attention,
    forward as forward,
    ideal_keys as ideal_keys,
    init_params as init_params,
    layer2_inputs as layer2_inputs,
    probe_margins as probe_margins,
    probe_scores as probe_scores,
    refine_keys as refine_keys,
)
from ._predict import (
    agreement as agreement,
    memory_problem as memory_problem,
    pool_arrays as pool_arrays,
    predict as predict,
    problem_from_arrays as problem_from_arrays,
    sharpness as sharpness,
)
from ._train import MODES as MODES, Config as Config, initial_params as initial_params, train as train
from ._reproduce import (
    Reproduction as Reproduction,
    Run as Run,
    reproduce as reproduce,
    run as run,
)
