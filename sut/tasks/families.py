"""The building blocks of task families: the Family record, literal pools and task makers.

A family is one kind of task ("the largest number in a list") with one or more difficulty
levels and a generator ``make(rng, level) -> Draft``. Each template inside a family has
exactly one canonical solution, written with the same literals the prompt shows, so the
mapping prompt -> code is a small learnable translation (the suite trains a ~1M-parameter
model from scratch). Expected values are computed here by plain Python, never by running
the solution text; tests/test_tasks.py proves the two agree through the real sandbox.

The families themselves live in task_families_{numbers,text,lists,loops}.py; sut/tasks/basic.py
assembles them into FAMILIES.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from verifier.checks import CallCheck, Check, ValueCheck

CATEGORIES = ("arithmetic", "strings", "lists", "dicts", "comprehensions", "conditionals", "loops",
              "compositions", "reference")

# Short lowercase words: literals for string tasks, dict keys, return labels. Every one is
# at least 3 letters, and none is a Python keyword or builtin name.
WORDS = (
    "apple", "arrow", "bread", "brick", "cabin", "camel", "candy", "cloud", "coral", "crane",
    "daisy", "delta", "eagle", "ember", "fable", "fern", "flame", "frost", "grape", "grass",
    "honey", "house", "igloo", "ivory", "jelly", "jewel", "kayak", "kite", "lemon", "lilac",
    "llama", "lunar", "mango", "maple", "melon", "mouse", "noble", "north", "ocean", "olive",
    "onion", "otter", "panda", "pearl", "piano", "plum", "quail", "quilt", "radio", "raven",
    "river", "robin", "salad", "sheep", "spoon", "stone", "sugar", "table", "tiger", "toast",
    "tulip", "umbra", "urban", "valve", "vivid", "wagon", "water", "whale", "yacht", "yodel",
    "zebra", "amber", "bison", "cedar", "dune", "elbow", "fox", "gold", "hat", "ink",
    "jam", "key", "lamp", "moon", "nest", "oak", "pen", "rain", "star", "sun",
    "tree", "wolf", "code", "data", "byte", "node", "hello", "world", "python", "banana",
)
VOWELS = "aeiou"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Draft(NamedTuple):
    """A task before it has an id: what the model sees, the canonical answer, the check."""

    prompt: str
    solution: str
    check: Check


@dataclass(frozen=True)
class Family:
    """One kind of task. ``make(rng, level)`` returns a Draft at difficulty ``level``."""

    name: str
    category: str
    levels: tuple[int, ...]
    make: Callable[[random.Random, int], Draft]

    def generate(self, rng: random.Random, level: int | None = None) -> Draft:
        """Draw one task; ``level`` defaults to a random one of ``levels``."""
        if level is None:
            level = rng.choice(self.levels)
        if level not in self.levels:
            raise ValueError(f"family {self.name!r} has levels {self.levels}, not {level}")
        return self.make(rng, level)


def family(name: str, category: str, *levels: int) -> Callable[[Callable[[random.Random, int], Draft]], Family]:
    """Decorator turning ``make(rng, level)`` into a Family."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; use one of {CATEGORIES}")

    def wrap(make: Callable[[random.Random, int], Draft]) -> Family:
        return Family(name, category, tuple(levels) or (1,), make)
    return wrap


def families_in(namespace: dict[str, Any]) -> list[Family]:
    """The Family objects of a module, in definition order."""
    return [v for v in namespace.values() if isinstance(v, Family)]


# ---- literal pools ----------------------------------------------------------------------

def word(rng: random.Random) -> str:
    return rng.choice(WORDS)


def words(rng: random.Random, k: int) -> list[str]:
    """``k`` distinct words."""
    return rng.sample(WORDS, k)


def nums(rng: random.Random, k: int | None = None, lo: int = 0, hi: int = 20, distinct: bool = False) -> list[int]:
    """A list of 3-5 (or ``k``) small ints."""
    k = k if k is not None else rng.randint(3, 5)
    if distinct:
        return rng.sample(range(lo, hi + 1), k)
    return [rng.randint(lo, hi) for _ in range(k)]


def phrase(rng: random.Random, max_words: int = 2) -> str:
    """One or more words joined by spaces (more variety for string tasks)."""
    return " ".join(words(rng, rng.randint(1, max_words)))


def letter_of(rng: random.Random, s: str, p_inside: float = 0.8) -> str:
    """Usually a letter occurring in ``s``, sometimes any letter (so counts of 0 occur)."""
    letters = [c for c in s if c.isalpha()]
    return rng.choice(letters) if letters and rng.random() < p_inside else rng.choice(LETTERS)


def pick(rng: random.Random, options: Sequence[Any]) -> Any:
    return rng.choice(list(options))


# ---- task makers ------------------------------------------------------------------------

def value_task(prompt: str, solution: str, expected: Any) -> Draft:
    """A value task: the program assigns ``result``; the check holds the expected value."""
    return Draft(prompt, solution, ValueCheck(expected))


FN_LEADS = (
    "Write a function {sig} that returns {what}.",
    "Define {sig} to return {what}.",
    "Implement {sig}, which returns {what}.",
)


def function_task(rng: random.Random, sig_name: str, params: Sequence[str], what: str, body: str,
                  fn: Callable[..., Any], inputs: Sequence[Sequence[Any]]) -> Draft:
    """A function task: ``def sig_name(params):`` + 4-space-indented ``body``, tested by
    CallCheck on ``inputs`` (hidden from the prompt) with outputs computed by ``fn``."""
    sig = f"{sig_name}({', '.join(params)})"
    prompt = pick(rng, FN_LEADS).format(sig=sig, what=what)
    solution = f"def {sig}:\n" + "\n".join("    " + line for line in body.splitlines())
    args = tuple(tuple(a) for a in inputs)
    return Draft(prompt, solution, CallCheck(sig_name, args, tuple(fn(*a) for a in args)))
