"""Pre-training machinery, kept apart so each part reads on its own (torchtitan's boundaries):

- `schedule`: warm-up + cosine learning rate; how an update splits into slots and processes
- `data`: the shards as per-slot batch streams, validation batches, bytes per token, baseline
- `loop`: the trainer (accumulation, clipping, validation, metrics, checkpoints)
- `checkpoint`: atomic, verified checkpoints that resume exactly
- `distributed`: processes, devices, collectives (DDP under torchrun)
- `metrics`: JSON lines, progress bar / log lines, MFU against per-device peaks

`gptpipe/stages/pretrain.py` wires them together.
"""
