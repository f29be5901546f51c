"""The `fetch` stage: every declared source (Wikipedia dump parts, task files and archives) from
a mirror folder or the network, verified against its checksum, never half-written.

Modules: `sources` (resolve, download, verify, unpack), `multistream` (repack a single-stream dump
into a multistream one with its index), `cli` (`gptpipe fetch`).
"""
