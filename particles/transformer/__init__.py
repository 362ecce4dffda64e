"""The paper's Transformer validation (Bietti et al.'s two-layer attention-only model).

`reproduce(out_dir)` regenerates the panels; `run_experiment(Config(...))` runs one setting;
the pieces (data, model, ideal memories, particle prediction) are re-exported below.
"""

from ._data import (
    Batch as Batch,
    BigramData as BigramData,
    from_text as from_text,
    induction_statistics as induction_statistics,
    synthetic as synthetic,
)
from ._model import (
    Embeddings as Embeddings,
    Weights as Weights,
    attention as attention,
    embeddings as embeddings,
    forward as forward,
    ideal_weights as ideal_weights,
    probe_margins as probe_margins,
    probe_scores as probe_scores,
    random_weights as random_weights,
    layer2_inputs as layer2_inputs,
    refine_induction_head as refine_induction_head,
    refine_previous_token as refine_previous_token,
    token_losses as token_losses,
)
from ._predict import (
    agreement as agreement,
    large_spikes as large_spikes,
    margin_jumps as margin_jumps,
    memory_problem as memory_problem,
    pool_problem as pool_problem,
    predict as predict,
    spike_steps as spike_steps,
)
from ._reproduce import (
    plot_run as plot_run,
    reproduce as reproduce,
    run_experiment as run_experiment,
    save_run as save_run,
    summary as summary,
)
from ._train import Config as Config, Setup as Setup, setup as setup, train as train
