"""The building blocks of agentic task families: open conventions, the Family base, input pools.

A family is one kind of small function ("count the numbers past a threshold") at one or more
difficulty levels. A task of it is fixed by three independent draws:

- the *core*: the semantic parameters the prompt states (a threshold, a word, a direction) and
  the level; the split a task belongs to is decided by its core alone (sut/tasks/agentic/suite.py);
- the *names*: the function's and parameters' names, from small per-family pools;
- the *conventions*: details the prompt leaves open (is the bound inclusive, which of a tie
  wins, what an empty input returns), drawn independently of the prompt's wording, and
  revealed only by the hidden test cases.

Each family writes the canonical solution for every convention value (``solution``) and
computes expected values with its own plain Python (``reference``), never by running the
solution text; tests/test_agentic_tasks.py proves the two agree through the real sandbox.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sut.tasks.families import LETTERS, WORDS  # the same literal pools as basic
from verifier.compare import same

CATEGORIES = ("accumulators", "early_return", "branches", "loops", "strings", "lists", "dicts")
LEADS = ("Write {sig} that returns {what}.", "Define {sig} to return {what}.", "Implement {sig}, which returns {what}.")
MIN_CASES, MAX_CASES = 6, 10
CASES = 8   # cases per task unless a family's edge cases need more

INT_ARGS = ("xs", "nums", "data")
TEXT_ARGS = ("s", "text", "line")
WORD_ARGS = ("words", "names", "items")
DICT_ARGS = ("d", "counts", "table")



class FamilyBug(RuntimeError):
    """A family produced a task that breaks the suite's rules (a bug in the family, caught by tests)."""


@dataclass(frozen=True)
class Conv:
    """One convention a prompt leaves open: its values and what kind of case reveals it (for docs)."""

    name: str
    values: tuple[Any, ...]
    reveals: str


class Family:
    """One kind of task. Subclasses set the class attributes and implement the five methods."""

    name: ClassVar[str]
    category: ClassVar[str]
    levels: ClassVar[tuple[int, ...]] = (1,)
    difficulty: ClassVar[dict[int, int]] = {}     # level -> difficulty 1-3 (default: the level)
    arg_pools: ClassVar[tuple[tuple[str, ...], ...]] = (INT_ARGS,)

    on_empty_levels: ClassVar[tuple[int, ...]] = ()   # levels that also leave the shared ON_EMPTY open

    def space(self, level: int) -> list[dict[str, Any]]:
        """Every core of ``level``: the semantic parameters (JSON-able), without names."""
        raise NotImplementedError

    def own_convs(self, level: int) -> tuple[Conv, ...]:
        """The family's own open conventions (``convs`` adds the shared ones)."""
        raise NotImplementedError

    def fn_names(self, core: dict[str, Any]) -> tuple[str, ...]:
        raise NotImplementedError

    def whats(self, p: dict[str, Any]) -> tuple[str, ...]:
        """Paraphrases of what the function returns ({a}, {b} are the parameter names)."""
        raise NotImplementedError

    def own_solution(self, p: dict[str, Any], c: dict[str, Any]) -> str:
        raise NotImplementedError

    def own_reference(self, p: dict[str, Any], c: dict[str, Any], *args: Any) -> Any:
        raise NotImplementedError

    def own_edges(self, p: dict[str, Any], rng: random.Random) -> list[tuple]:
        """Cases that reveal the family's own conventions and pin the constants (values next to each bound)."""
        raise NotImplementedError

    def draw(self, p: dict[str, Any], rng: random.Random) -> tuple:
        """One random case."""
        raise NotImplementedError

    # ---- the shared convention (ON_EMPTY) wrapped around the family's own ----------------------

    def convs(self, level: int) -> tuple[Conv, ...]:
        """Every convention a task of ``level`` leaves open: the family's own, then ON_EMPTY where the level takes it."""
        return self.own_convs(level) + ((ON_EMPTY,) if level in self.on_empty_levels else ())

    def solution(self, p: dict[str, Any], c: dict[str, Any]) -> str:
        """The family's solution, with a guard after the ``def`` line when an empty input returns a sentinel."""
        code = self.own_solution(p, c)
        if c.get("on_empty", "result") == "result":
            return code
        head, _, body = code.partition("\n")
        a = p["args"][0]
        return "\n".join([head, f"    if not {a}:", f"        return {c['on_empty']!r}", body])

    def reference(self, p: dict[str, Any], c: dict[str, Any], *args: Any) -> Any:
        """Plain-Python twin of ``solution``."""
        if c.get("on_empty", "result") != "result" and not args[0]:
            return c["on_empty"]
        return self.own_reference(p, c, *args)

    def empty_case(self, p: dict[str, Any], rng: random.Random) -> tuple:
        """A random case with its first argument (a list, text or dict) emptied: what reveals ``on_empty``."""
        first, *rest = self.draw(p, rng)
        return (type(first)(), *rest)

    def extra(self, p: dict[str, Any]) -> str:
        """A sentence after the lead, for formats the prompt must state (default none)."""
        return ""

    # ---- shared machinery ---------------------------------------------------------------

    def level_difficulty(self, level: int) -> int:
        return self.difficulty.get(level, level)

    def params(self, core: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """The core plus drawn names: ``fn`` and ``args``."""
        args = [rng.choice(pool) for pool in self.arg_pools]
        return {"fn": rng.choice(self.fn_names(core)), "args": args, **core}

    def prompts(self, p: dict[str, Any]) -> list[str]:
        """Every paraphrase of the prompt for params ``p``."""
        names = {"a": p["args"][0], "b": p["args"][1] if len(p["args"]) > 1 else ""}
        sig = f"{p['fn']}({', '.join(p['args'])})"
        extra = self.extra(p).format(**names)
        return [(lead.format(sig=sig, what=what.format(**names)) + (" " + extra if extra else ""))
                for what in self.whats(p) for lead in LEADS]

    def cases(self, p: dict[str, Any], c: dict[str, Any], rng: random.Random) -> tuple[list[tuple], list[Any]]:
        """Edge cases plus random ones (CASES in all, distinct, shuffled) and their expected returns.

        Raises FamilyBug unless, for every open convention and every other value of it, some case's
        expected return changes: the cases reveal each convention by construction."""
        inputs: list[tuple] = []
        for args in self.own_edges(p, rng):
            if args not in inputs:
                inputs.append(args)
        if p["level"] in self.on_empty_levels:
            args = self.empty_case(p, rng)
            if args not in inputs:
                inputs.append(args)
        for _ in range(200):
            if len(inputs) >= CASES:
                break
            args = self.draw(p, rng)
            if args not in inputs:
                inputs.append(args)
        rng.shuffle(inputs)
        if not MIN_CASES <= len(inputs) <= MAX_CASES:
            raise FamilyBug(f"{self.name}: {len(inputs)} cases, want {MIN_CASES}-{MAX_CASES}")
        expected = self.expect(p, c, inputs)
        level = p["level"]
        for cv in self.convs(level):
            for value in cv.values:
                if value == c[cv.name]:
                    continue
                alt = self.expect(p, {**c, cv.name: value}, inputs)
                if all(same(e, a) for e, a in zip(expected, alt)):
                    raise FamilyBug(f"{self.name}: no case tells {cv.name}={c[cv.name]!r} from {value!r} ({p})")
        return inputs, expected

    def expect(self, p: dict[str, Any], c: dict[str, Any], inputs: Sequence[tuple]) -> list[Any]:
        """Expected returns by the family's plain Python (each call on its own copy of the inputs)."""
        return [self.reference(p, c, *plain_copy(args)) for args in inputs]


def plain_copy(value: Any) -> Any:
    """A deep copy of plain data (lists, tuples, dicts of scalars): what copy.deepcopy does here, 5x faster."""
    t = type(value)
    if t is list:
        return [plain_copy(v) for v in value]
    if t is tuple:
        return tuple(plain_copy(v) for v in value)
    if t is dict:
        return {k: plain_copy(v) for k, v in value.items()}
    return value


def fmt(lines: Sequence[str]) -> str:
    """Join code lines (already indented) into a solution text."""
    return "\n".join(line for line in lines if line is not None)


def cmp_op(direction: str, bound: str) -> str:
    """The comparison for "past the threshold": above/below, exclusive/inclusive."""
    return {("above", "exclusive"): ">", ("above", "inclusive"): ">=",
            ("below", "exclusive"): "<", ("below", "inclusive"): "<="}[(direction, bound)]


def passes(x: Any, k: Any, direction: str, bound: str) -> bool:
    """Plain-Python twin of ``cmp_op``."""
    if direction == "above":
        return x > k if bound == "exclusive" else x >= k
    return x < k if bound == "exclusive" else x <= k


# The convention families share (a family's ``on_empty_levels``): what an empty input returns, the computed
# result or a sentinel that only the failing case names. Three values, so a retry told only
# "failed" must guess between two sentinels, while one that reads the case copies it.
ON_EMPTY = Conv("on_empty", ("result", None, -1), "an empty input: the computed result, or the sentinel it shows")

BOUND = Conv("bound", ("exclusive", "inclusive"), "an element equal to the threshold")
CASE = Conv("case", ("sensitive", "insensitive"), "an upper-case letter or word")
PAST_WORDS = {"above": ("pass the threshold", "clear the mark"), "below": ("stay within the limit", "fit under the limit")}
PAST_WORD = {"above": ("passes the threshold", "clears the mark"), "below": ("stays within the limit", "fits under the limit")}


def ints(rng: random.Random, lo: int, hi: int, n_lo: int = 0, n_hi: int = 6) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(n_lo, n_hi))]


def shuffled(rng: random.Random, xs: Sequence[Any]) -> list[Any]:
    out = list(xs)
    rng.shuffle(out)
    return out


def mixed_case(rng: random.Random, word: str, p_upper: float = 0.3) -> str:
    """``word`` with some letters in upper case."""
    return "".join(c.upper() if rng.random() < p_upper else c for c in word)


def words_text(rng: random.Random, n_lo: int = 1, n_hi: int = 5) -> str:
    """``n_lo`` to ``n_hi`` random words joined by spaces."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(n_lo, n_hi)))
