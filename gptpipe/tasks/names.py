"""Task names as the `finetune` config may spell them, made canonical (`sst2` -> `SST-2`).

Kept free of torch so that validating `params.yaml` stays fast.
"""

from __future__ import annotations

from typing import Iterable

from .. import tasks
from ..errors import GptpipeError


def canonical_task(name: str) -> str:
    """The registry's spelling of a task that can be fine-tuned; ValueError otherwise."""
    try:
        spec = tasks.get(name)
    except GptpipeError as exc:
        raise ValueError(str(exc)) from None
    if spec.train_split is None:
        raise ValueError(f"task {spec.name} is not fine-tuned: it is predicted with the "
                         f"{spec.predict_with} model")
    return spec.name


def canonical_tasks(names: Iterable[str], field: str) -> tuple[str, ...]:
    """Canonical names, in order; unknown or repeated tasks are a ValueError naming `field`."""
    out: list[str] = []
    for name in names:
        try:
            canon = canonical_task(str(name))
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
        if canon in out:
            raise ValueError(f"{field}: task {canon} is listed twice")
        out.append(canon)
    return tuple(out)
