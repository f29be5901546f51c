"""The `finetune` stage: GPT-1 fine-tuned on one of the paper's tasks (§3.2-3.3).

Modules: `data` (splits, file overrides, holdouts, caps), `body` (the model folder: tokenizer
checks, pre-trained or fresh weights), `model` (the GPT body plus a classifier head per input
transformation, the losses), `loop` (length-bucketed batches, training with gradient
accumulation, prediction), `passes` (examples per forward pass and their memory estimate),
`outputs` (metrics, predictions, GLUE submissions), `transfer` (variant `transfer<k>`, Figure
2's layers transferred), `cli` (`gptpipe finetune`). The tasks
themselves (loaders, input transformations, metrics, names) are the registry in `gptpipe.tasks`.
"""
