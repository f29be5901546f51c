"""The `report` stage: read every stage's outputs and show them beside the paper.

Modules: `collect` (stage outputs -> checked dicts and polars frames), `tables` (the paper's
Tables 2-5 with our mean and spread over seeds, compute used), `figures` (matplotlib, PNG bytes),
`provenance` (inputs, checksums, code and package versions, resolved config), `render` (Markdown
and self-contained HTML), `cli` (`gptpipe report`: the page's sections and the run).
"""
