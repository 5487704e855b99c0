"""Instruction wordings of the pick-and-place task and how each maps to its placement region.

Three disjoint roles:

* :data:`INSTRUCTIONS`: the templates the demonstrations are recorded with and the closed-loop
  evaluation's "template" episodes use;
* :data:`TRAINING_WORDINGS`: the templates plus many more wordings per region (the colour of the
  region's square included: green = left, blue = right), which training draws from at random
  (language augmentation, ``sigma-make-default --language-augmentation``);
* :data:`HELD_OUT_PARAPHRASES`: other wordings with the same meaning, never used in training, for
  the closed-loop evaluation's ``paraphrase`` condition.

:func:`instruction_target` (the simulator's success check) resolves every one of them.
"""

from __future__ import annotations

import re

import numpy as np

#: Words naming each placement region (its side or the colour of its square).
REGION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "leftmost", "green"),
    "right": ("right", "rightmost", "blue"),
}

#: Instruction templates per placement region (recorded demonstrations, template evaluation).
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "left": (
        "pick the cube and place it on the left",
        "put the red cube on the green square on the left",
        "move the cube to the left",
    ),
    "right": (
        "pick the cube and place it on the right",
        "put the red cube on the blue square on the right",
        "move the cube to the right",
    ),
}

_TRAINING_VERBS = (
    "pick the cube and place it", "put the cube", "move the cube", "put the red cube", "place the red cube",
    "grab the cube and put it", "pick up the cube and drop it", "take the cube and set it", "carry the cube",
    "lift the red cube and place it",
)
_TRAINING_PLACES = {
    "left": ("on the left", "to the left", "on the left side", "onto the green square", "on the green square",
             "on the green square on the left", "in the left region", "to the green target"),
    "right": ("on the right", "to the right", "on the right side", "onto the blue square", "on the blue square",
              "on the blue square on the right", "in the right region", "to the blue target"),
}

#: Every wording training may use, per region (templates first).
TRAINING_WORDINGS: dict[str, tuple[str, ...]] = {
    region: tuple(dict.fromkeys(
        INSTRUCTIONS[region] + tuple(f"{verb} {place}" for verb in _TRAINING_VERBS for place in places)))
    for region, places in _TRAINING_PLACES.items()
}

#: Paraphrases never used in training: other verbs, nouns and phrasings, side and colour variants.
HELD_OUT_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "left": (
        "could you transfer the block over to the left-hand side",
        "set the small box down at the leftmost spot",
        "relocate the cube onto the green pad",
        "bring that red block over to the green area",
        "I want the cube sitting on the left please",
        "deposit the block in the left zone",
        "shift the red cube across to the green mat",
        "the cube goes on the left, please move it there",
    ),
    "right": (
        "could you transfer the block over to the right-hand side",
        "set the small box down at the rightmost spot",
        "relocate the cube onto the blue pad",
        "bring that red block over to the blue area",
        "I want the cube sitting on the right please",
        "deposit the block in the right zone",
        "shift the red cube across to the blue mat",
        "the cube goes on the right, please move it there",
    ),
}


def instruction_target(instruction: str, regions: tuple[str, ...] = ("left", "right")) -> str:
    """The placement region an instruction refers to, from the words naming it (:data:`REGION_WORDS`;
    a region outside that table is named by its own name).

    Raises:
        ValueError: If the text names no region or more than one.
    """
    words = set(re.findall(r"[a-z]+", instruction.lower()))
    found = [r for r in regions if words & set(REGION_WORDS.get(r, (r,)))]
    if len(found) != 1:
        raise ValueError(f"instruction must name exactly one of {regions}: {instruction!r}")
    return found[0]


def episode_wording(episode_index: int, seed: int, wordings: dict[str, tuple[str, ...]] = INSTRUCTIONS) -> str:
    """Instruction of episode ``episode_index``: regions alternate, the wording drawn from ``seed``."""
    regions = list(wordings)
    texts = wordings[regions[episode_index % len(regions)]]
    return texts[int(np.random.default_rng(seed).integers(len(texts)))]
