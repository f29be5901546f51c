"""The `ingest` stage: one Wikipedia dump part -> clean prose in Parquet, in parallel.

Modules: `wiki` (the dump's XML and bz2 streams), `bz2blocks` (a single-stream .bz2 cut at its
block boundaries for parallel decompression), `wikitext` (wikitext -> prose), `articles` (which
pages are kept, each page's train/val split, Parquet batches), `corpus` (the reader of ingest's
output that `bpe` and `shard` use), `cli` (`gptpipe ingest`: the parallel readers and the run).
"""
