"""The `pretrain` stage, kept in parts that read on their own (torchtitan's boundaries):

- `schedule`: how an update splits into slots and processes
- `loader`: the shards as a resumable, rank-disjoint stream (the pre-training data order)
- `data`: per-slot batch streams, validation batches, bytes per token, the unigram baseline
- `loop`: the trainer (accumulation, clipping, validation, metrics, checkpoints)
- `checkpoint`: atomic, verified checkpoints that resume exactly
- `distributed`: processes, devices, collectives (DDP under torchrun)
- `metrics`: JSON lines, progress bar / log lines, MFU against per-device peaks
- `run`: the wiring of the above; `cli`: `gptpipe pretrain`
"""
