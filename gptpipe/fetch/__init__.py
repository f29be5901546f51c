"""The `fetch` stage: every declared source (Wikipedia dump parts, task files and archives) from
a mirror folder or the network, verified against its checksum, never half-written.

Modules: `sources` (resolve, verify, unpack), `download` (HTTP with resume after a dropped
connection), `multistream` (repack a single-stream dump into a multistream one with its index),
`build` (GLUE's MRPC files), `cli` (`gptpipe fetch`). `corpora/`: the packaged pre-training
corpora, their parts' names, sizes and sha256 (read by `gptpipe.corpora`).
"""
