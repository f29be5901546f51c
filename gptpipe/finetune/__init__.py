"""Fine-tuning GPT-1 on the paper's tasks (§3.2-3.3); `gptpipe.stages.finetune` runs it.

Modules: `names` (task names in the config), `data` (splits, file overrides, holdouts, caps),
`body` (the model folder: tokenizer checks, pre-trained or fresh weights), `model` (the GPT body
plus a classifier head per input transformation, the losses), `loop` (length-bucketed batches,
the schedule, training and prediction), `outputs` (metrics, predictions, GLUE submissions).
Nothing is imported here: the config validates task names through `names`, and that must not
import torch.
"""
