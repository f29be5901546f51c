"""The `shard` stage: documents -> token windows in WebDataset tar shards.

Modules: `reader` (the format: manifest, checks, reading a shard back; what `pretrain` imports),
`writer` (parallel encoding, window packing, byte-identical tar shards), `cli` (`gptpipe shard`).
"""
