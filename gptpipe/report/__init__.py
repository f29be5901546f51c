"""The `report` stage's parts: read every stage's outputs and show them beside the paper.

Modules: `collect` (stage outputs -> checked dicts and polars frames), `tables` (the paper's
Tables 2-5 with our mean and spread over seeds, compute used), `figures` (matplotlib, PNG bytes),
`provenance` (inputs, checksums, code and package versions, resolved config), `render` (Markdown
and self-contained HTML). `gptpipe.stages.report` wires them; nothing is imported here.
"""
