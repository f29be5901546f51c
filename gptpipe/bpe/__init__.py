"""The `bpe` stage: train the tokenizer on the ingested text (`tokenizer`), `cli` (`gptpipe
bpe`). The vocabulary layout and reading a tokenizer.json, which later stages need, live in
`gptpipe.vocab`.
"""
