"""The `zeroshot` stage: the paper's zero-shot heuristics (§5, Figure 2 right) on every weight
snapshot pre-training wrote. Modules: `score` (continuation log-probabilities), `heuristics`
(the four tasks' rules), `data` (their examples, DPRD's reader), `run`, `cli`."""
