"""Each method in its paper's regime, and one training recipe for the study.

`regime(method, epochs)` gives the sampler options that run ``method`` as its paper (or its public code)
does; `outside(method, options, epochs)` says, in a label a table or figure can carry, how a run departs
from it (``None`` inside). Both read the method's card (`samplers.Method`), declared beside its sampler. A budget outside a method's regime stays possible: it is labelled, never
silently mixed with in-regime runs. `RECIPE` is the training recipe shared by every method of the fair
protocol, close to [Omission] §5's.

Where a paper leaves a value open, the card says so and says what we chose.
"""
from __future__ import annotations

from .samplers import card

# [Omission] §5: "10% warm-up", "drop_last=True" (cosine from the maximum learning rate, SGD momentum 0.9).
RECIPE = dict(warmup_fraction=0.1, drop_last=True, schedule="cosine")


def regime(method: str, epochs: int) -> dict:
    """Sampler options of ``method``'s paper regime for a run of ``epochs`` epochs: its card's (`samplers.Method.regime`,
    declared with the sampler, whose docstring quotes the paper; e.g. [InfoBatch]'s r = 0.5 and delta = 0.875, [Raju]'s
    20 checkpoints per run). Methods whose paper takes the study's keep_ratio as a free budget knob (Omission, random,
    RS2, ...) give an empty dict. Where a paper leaves a value open, the card says so and says what we chose."""
    return card(method).regime(int(epochs))


def outside(method: str, options: dict, epochs: int) -> str | None:
    """How a run of ``method`` with sampler ``options`` over ``epochs`` departs from its paper's regime, as a label
    (``None`` when it is inside): its card's `samplers.Method.outside`."""
    return card(method).outside(dict(options or {}), int(epochs))


def recipe(epochs: int) -> dict:
    """RunConfig fields of the shared recipe for a run of ``epochs`` epochs: linear warm-up over 10% of
    the run, then cosine; drop_last (no tiny last batch carrying large weights)."""
    return dict(schedule=RECIPE["schedule"], warmup_epochs=RECIPE["warmup_fraction"] * epochs,
                drop_last=RECIPE["drop_last"])
