# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Instruction wordings of the pick-and-place task and how each maps to its placement region.

Four disjoint roles:

* :data:`INSTRUCTIONS`: the templates the demonstrations are recorded with and the closed-loop
  evaluation's "template" episodes use;
* :data:`TRAINING_WORDINGS`: the templates plus many more wordings per region (the colour of the
  region's square included: green = left, blue = right; most from a wording grammar), which training
  draws from at random (language augmentation, ``sigma-make-default --language_augmentation=true``, and
  the language alignment stage);
* :data:`SELECTION_PARAPHRASES`: paraphrases never trained on that choose checkpoints and settings (the
  closed-loop evaluation's ``paraphrase_selection`` variation);
* :data:`HELD_OUT_PARAPHRASES`: paraphrases never trained on nor used to choose, for the closed-loop
  evaluation's ``paraphrase`` variation.

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

# A wording grammar (2026-12-01): more sentence forms, verbs, nouns and ways to name each region, so that
# training language covers how people word this task rather than ten verbs and eight places.
_PREFIXES = ("", "please ", "could you ", "can you ", "now ", "i want you to ", "go ahead and ", "would you ",
             "robot, ", "next, ", "ok, ", "i need you to ")
_SUFFIXES = ("", " please", " now", " for me", " thanks", ", thank you")
_OBJECTS = ("the cube", "the red cube", "the block", "the red block", "the box", "the small cube",
            "the little red cube", "that cube", "that red block", "the object", "the red object", "the item",
            "the red thing", "the piece", "this cube", "the small red box")
_ACTIONS = ("put {o}", "place {o}", "move {o}", "set {o}", "set {o} down", "bring {o}", "take {o}", "carry {o}",
            "drop {o}", "lay {o}", "position {o}", "slide {o}", "transfer {o}", "shift {o}", "relocate {o}",
            "deliver {o}", "get {o}", "leave {o}", "deposit {o}", "put {o} down", "pick up {o} and put it",
            "grab {o} and place it", "lift {o} and set it down", "take {o} and move it", "pick {o} up and drop it",
            "grasp {o} and carry it", "pick up {o} and bring it")
_SENTENCES = ("{p}{a} {r}{s}", "{p}{a} {r}{s}", "{p}{a} {r}{s}", "{o} {r}{s}", "{o} goes {r}{s}",
              "{o} should go {r}{s}")
_REGION_PHRASES = {
    side: tuple(form.format(side=side, colour=colour) for form in (
        "on the {side}", "to the {side}", "over to the {side}", "on the {side} side", "to the {side} side",
        "on the {side}-hand side", "to the {side}-hand side", "over on the {side}", "at the {side}",
        "towards the {side}", "on the {side} of the table", "on the {side}most spot", "at the {side}most position",
        "in the {side} zone", "in the {side} area", "in the {side} region", "on the {side} target",
        "to the {side} corner", "on the {side} spot",
        "on the {colour} square", "onto the {colour} square", "to the {colour} square", "on the {colour} pad",
        "onto the {colour} pad", "on the {colour} mat", "in the {colour} area", "in the {colour} zone",
        "on the {colour} target", "to the {colour} marker", "on the {colour} patch", "on the {colour} tile",
        "over to the {colour} square", "at the {colour} spot", "on top of the {colour} square",
        "on the {colour} square on the {side}", "to the {colour} area on the {side}",
        "on the {colour} one", "onto the {colour} mark"))
    for side, colour in (("left", "green"), ("right", "blue"))
}
GRAMMAR_WORDINGS_PER_REGION = 1200


def wording_words(text: str) -> str:
    """Return the words of a wording, lower case, without punctuation: what tells two wordings apart."""
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def grammar_wordings(region: str, count: int = GRAMMAR_WORDINGS_PER_REGION, seed: int = 0,
                     exclude: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """``count`` distinct wordings of the task for ``region`` drawn from the wording grammar.

    Deterministic for a seed; a wording whose words (:func:`wording_words`) are in ``exclude`` is skipped.
    """
    rng = np.random.default_rng([seed, 0 if region == "left" else 1])
    out: dict[str, None] = {}
    pick = lambda items: items[int(rng.integers(len(items)))]  # noqa: E731
    while len(out) < count:
        obj = pick(_OBJECTS)
        text = pick(_SENTENCES).format(p=pick(_PREFIXES), a=pick(_ACTIONS).format(o=obj), o=obj,
                                       r=pick(_REGION_PHRASES[region]), s=pick(_SUFFIXES))
        if wording_words(text) not in exclude:
            out[text] = None
    return tuple(out)


#: Every wording training may use, per region: the templates, the first list of verbs x places, then the grammar's
#: wordings (never a held-out paraphrase).
TRAINING_WORDINGS: dict[str, tuple[str, ...]] = {}  # filled below, once the held-out paraphrases are defined

#: The first held-out paraphrases (other verbs, nouns and phrasings, side and colour variants), never used in training.
#: Looked at on 2026-12-01 (which of them the shipped model failed): since then they choose checkpoints and settings
#: (the ``paraphrase_selection`` variation) and :data:`HELD_OUT_PARAPHRASES` reports.
SELECTION_PARAPHRASES: dict[str, tuple[str, ...]] = {
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


#: Paraphrases never used in training nor in any choice, written after the wording grammar (its commit comes first):
#: sentence forms the grammar lacks, both sides and the colour variants. The ``paraphrase`` variation reports them.
HELD_OUT_PARAPHRASES: dict[str, tuple[str, ...]] = {
    side: tuple(text.format(side=side, colour=colour) for text in (
        "i'd like the cube moved over to the {side}, if you can",
        "can the red cube end up on the {colour} square?",
        "{side} side for the cube, please",
        "the block needs to be sitting on the {colour} tile",
        "grab it and leave it where the {colour} square is",
        "your task: cube to the {side}",
        "make sure the red cube lands in the {colour} region",
        "pop the little block across onto the {side} part of the table",
    ))
    for side, colour in (("left", "green"), ("right", "blue"))
}

_HELD_OUT_WORDS = frozenset(wording_words(t) for wordings in (HELD_OUT_PARAPHRASES, SELECTION_PARAPHRASES)
                            for texts in wordings.values() for t in texts)
TRAINING_WORDINGS.update({
    region: tuple(dict.fromkeys(
        INSTRUCTIONS[region] + tuple(f"{verb} {place}" for verb in _TRAINING_VERBS for place in places)
        + grammar_wordings(region, exclude=_HELD_OUT_WORDS)))
    for region, places in _TRAINING_PLACES.items()
})

def instruction_target(instruction: str, regions: tuple[str, ...] = ("left", "right")) -> str:
    """Return the placement region an instruction refers to.

    From the words naming it (:data:`REGION_WORDS`. A region outside that table is named by its own name).

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
