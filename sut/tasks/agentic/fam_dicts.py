"""Agentic families that build or read dicts (inverting, grouping, counting, updating stock)
and two list families that build their result item by item (distinct values, grade labels)."""
from __future__ import annotations

import random

from sut.tasks.agentic.family import (BOUND, CASE, DICT_ARGS, LETTERS, PAST_WORD, PAST_WORDS, WORDS, Conv, Family, cmp_op,
                                fmt, ints, passes, shuffled)

VALUE_BOUND = Conv("bound", ("exclusive", "inclusive"), "a value equal to the threshold")
DUP = Conv("dup", ("last", "first"), "two keys with the same passing value")
TIE = Conv("tie", ("first", "last"), "two keys whose values are equally close")
EMPTY_KEY = Conv("empty", (None, ""), "an empty dict")
ORDER = Conv("order", ("input", "sorted"), "a group whose numbers arrive out of order")
MISSING = Conv("missing", ("skip", "negative"), "a sale of an item not in stock")
ZERO = Conv("zero", ("keep", "remove"), "an item sold down to exactly zero")
SCOPE = Conv("scope", ("letters", "all"), "a space or a digit")
KEEP = Conv("keep", ("first", "last"), "a passing number that repeats")
FALLBACK = Conv("fallback", ("", "none", None), "a score below both cut-offs")
CUTOFF = Conv("bound", ("exclusive", "inclusive"), "a score equal to a cut-off")
GRADE_WORDS = (("gold", "silver"), ("high", "mid"), ("top", "good"))


def _dict(rng: random.Random, values: list[int]) -> dict[str, int]:
    return dict(zip(rng.sample(WORDS, len(values)), values))


class InvertPast(Family):
    name, category, levels = "invert_past", "dicts", (2,)
    on_empty_levels = (2,)
    arg_pools = (DICT_ARGS,)

    def space(self, level):
        return [{"level": 2, "dir": d, "k": k} for d in ("above", "below") for k in range(3, 43)]

    def own_convs(self, level):
        return (VALUE_BOUND, DUP)

    def fn_names(self, core):
        d = core["dir"]
        return (f"invert_{d}", f"flip_{d}", f"swap_{d}")

    def whats(self, p):
        w0, w1 = PAST_WORD[p["dir"]]
        return (f"{{a}} inverted (values become keys), keeping only the entries whose value {w0} {p['k']}",
                f"a dict from each value of {{a}} that {w1} {p['k']} to its key")

    def own_solution(self, p, c):
        a, test = p["args"][0], f"v {cmp_op(p['dir'], c['bound'])} {p['k']}"
        if c["dup"] == "first":
            test += " and v not in out"
        return fmt([f"def {p['fn']}({a}):", "    out = {}", f"    for key, v in {a}.items():", f"        if {test}:",
                    "            out[v] = key", "    return out"])

    def own_reference(self, p, c, d):
        out: dict = {}
        for key, v in d.items():
            if passes(v, p["k"], p["dir"], c["bound"]) and (c["dup"] == "last" or v not in out):
                out[v] = key
        return out

    def own_edges(self, p, rng):
        k, s = p["k"], 1 if p["dir"] == "above" else -1
        return [({},), (_dict(rng, [k, k + s, k - s]),), (_dict(rng, [k + 2 * s, k + 2 * s, k - 2 * s]),)]

    def draw(self, p, rng):
        return (_dict(rng, ints(rng, p["k"] - 4, p["k"] + 4, 1, 5)),)


class ClosestKey(Family):
    name, category, levels = "closest_key", "dicts", (2,)
    arg_pools = (DICT_ARGS,)

    def space(self, level):
        return [{"level": 2, "k": k} for k in range(3, 63)]

    def own_convs(self, level):
        return (TIE, EMPTY_KEY)

    def fn_names(self, core):
        return ("nearest_key", "closest_key", "key_nearest")

    def whats(self, p):
        return (f"the key of {{a}} whose value is closest to {p['k']}", f"which key of {{a}} has the value nearest to {p['k']}")

    def own_solution(self, p, c):
        a, k, op = p["args"][0], p["k"], "<" if c["tie"] == "first" else "<="
        guard = [f"    if not {a}:", "        return ''"] if c["empty"] == "" else []
        return fmt([f"def {p['fn']}({a}):", *guard, "    best = None", f"    for key, v in {a}.items():",
                    f"        if best is None or abs(v - {k}) {op} abs({a}[best] - {k}):", "            best = key",
                    "    return best"])

    def own_reference(self, p, c, d):
        if not d:
            return c["empty"]
        dist = {key: abs(v - p["k"]) for key, v in d.items()}
        keys = [key for key in d if dist[key] == min(dist.values())]
        return keys[0] if c["tie"] == "first" else keys[-1]

    def own_edges(self, p, rng):
        k, g = p["k"], rng.randint(1, 3)
        return [({},), (_dict(rng, [k - g, k + g]),), (_dict(rng, [k + 9, k + g, k - g]),), (_dict(rng, [k + 1]),)]

    def draw(self, p, rng):
        return (_dict(rng, ints(rng, max(0, p["k"] - 8), p["k"] + 8, 1, 5)),)


class GroupBy(Family):
    name, category, levels = "group_by", "dicts", (2,)
    on_empty_levels = (2,)

    def space(self, level):
        return [{"level": 2, "op": op, "k": k} for op in ("%", "//") for k in range(2, 32)]

    def own_convs(self, level):
        return (ORDER,)

    def fn_names(self, core):
        return ("group_by_rest", "by_remainder", "split_mod") if core["op"] == "%" else ("group_by_band", "by_band", "bucket")

    def whats(self, p):
        k = p["k"]
        if p["op"] == "%":
            return (f"a dict grouping the numbers of {{a}} by their remainder when divided by {k}",
                    f"the numbers of {{a}} in lists keyed by their remainder modulo {k}")
        return (f"a dict grouping the numbers of {{a}} by their value divided by {k}, rounded down",
                f"the numbers of {{a}} in lists keyed by how many whole times {k} fits into them")

    def own_solution(self, p, c):
        a = p["args"][0]
        loop = f"    for x in {a}:" if c["order"] == "input" else f"    for x in sorted({a}):"
        return fmt([f"def {p['fn']}({a}):", "    out = {}", loop, f"        key = x {p['op']} {p['k']}", "        if key not in out:",
                    "            out[key] = []", "        out[key].append(x)", "    return out"])

    def own_reference(self, p, c, xs):
        out: dict = {}
        for x in (xs if c["order"] == "input" else sorted(xs)):
            out.setdefault(x % p["k"] if p["op"] == "%" else x // p["k"], []).append(x)
        return out

    def own_edges(self, p, rng):
        k = p["k"]
        same = [k + 1, 1] if p["op"] == "%" else [2 * k - 1, k]
        return [([],), (same,), ([3 * k, k, 2 * k + 1, 1],)]

    def draw(self, p, rng):
        return (ints(rng, 0, 4 * p["k"], 1, 6),)


class Restock(Family):
    name, category, levels = "restock", "dicts", (3,)
    on_empty_levels = (3,)
    arg_pools = (("stock", "counts", "store"), ("sold", "sales", "orders"))

    def space(self, level):
        return [{"level": 3, "k": k} for k in range(1, 41)]

    def own_convs(self, level):
        return (MISSING, ZERO)

    def fn_names(self, core):
        return ("restock", "apply_sales", "update_stock")

    def whats(self, p):
        return (f"a copy of {{a}} after each name in {{b}} lowers that item's count by {p['k']}",
                f"the stock dict {{a}} updated for the sales in {{b}}, each taking {p['k']} off its item")

    def own_solution(self, p, c):
        a, b, k = p["args"][0], p["args"][1], p["k"]
        if c["missing"] == "skip":
            loop = [f"    for name in {b}:", "        if name in out:", f"            out[name] -= {k}"]
        else:
            loop = [f"    for name in {b}:", f"        out[name] = out.get(name, 0) - {k}"]
        zero = ["    for name in list(out):", "        if out[name] == 0:", "            del out[name]"] if c["zero"] == "remove" else []
        return fmt([f"def {p['fn']}({a}, {b}):", f"    out = dict({a})", *loop, *zero, "    return out"])

    def own_reference(self, p, c, stock, sold):
        out = dict(stock)
        for name in sold:
            if name in out or c["missing"] == "negative":
                out[name] = out.get(name, 0) - p["k"]
        return {n: v for n, v in out.items() if not (c["zero"] == "remove" and v == 0)}

    def own_edges(self, p, rng):
        k = p["k"]
        a, b, x, z = rng.sample(WORDS, 4)
        return [({a: k, b: 2 * k + 1, x: 1}, [a, b, z]), ({a: k}, [a, a]), ({a: 3 * k}, []), ({}, [z])]

    def draw(self, p, rng):
        stock = _dict(rng, ints(rng, 1, 3 * p["k"], 1, 4))
        names = list(stock) + [rng.choice(WORDS)]
        return (stock, [rng.choice(names) for _ in range(rng.randint(0, 4))])


class LetterCounts(Family):
    name, category, levels = "letter_counts", "dicts", (2,)
    on_empty_levels = (2,)
    arg_pools = (("s", "text", "line"),)

    def space(self, level):
        return [{"level": 2, "skip": c} for c in LETTERS]

    def own_convs(self, level):
        return (CASE, SCOPE)

    def fn_names(self, core):
        return ("letter_counts", "count_letters", "tally")

    def whats(self, p):
        return (f"a dict counting the characters of {{a}}, except '{p['skip']}'",
                f"how often each character occurs in {{a}}, as a dict, skipping '{p['skip']}'")

    def own_solution(self, p, c):
        a, skip = p["args"][0], p["skip"]
        loop = f"    for c in {a}:" if c["case"] == "sensitive" else f"    for c in {a}.lower():"
        test = f"c.isalpha() and c != {skip!r}" if c["scope"] == "letters" else f"c != {skip!r}"
        return fmt([f"def {p['fn']}({a}):", "    counts = {}", loop, f"        if {test}:",
                    "            counts[c] = counts.get(c, 0) + 1", "    return counts"])

    def own_reference(self, p, c, s):
        out: dict = {}
        for ch in (s if c["case"] == "sensitive" else s.lower()):
            if ch != p["skip"] and (ch.isalpha() or c["scope"] == "all"):
                out[ch] = out.get(ch, 0) + 1
        return out

    def own_edges(self, p, rng):
        return [("",), (f"Ab a{p['skip']}1",), (rng.choice(WORDS).capitalize() + " " + p["skip"].upper(),)]

    def draw(self, p, rng):
        return (" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 2))),)


class WordFreq(Family):
    name, category, levels = "word_freq", "dicts", (2,)
    on_empty_levels = (2,)
    arg_pools = (("s", "text", "line"),)

    def space(self, level):
        return [{"level": 2, "skip": w} for w in WORDS]

    def own_convs(self, level):
        return (CASE,)

    def fn_names(self, core):
        return ("word_counts", "count_words", "word_freq")

    def whats(self, p):
        return (f"a dict counting how often each word of {{a}} occurs, ignoring the word '{p['skip']}'",
                f"how many times each word appears in {{a}}, as a dict, leaving out '{p['skip']}'")

    def own_solution(self, p, c):
        a = p["args"][0]
        loop = f"    for w in {a}.split():" if c["case"] == "sensitive" else f"    for w in {a}.lower().split():"
        return fmt([f"def {p['fn']}({a}):", "    counts = {}", loop, f"        if w != {p['skip']!r}:",
                    "            counts[w] = counts.get(w, 0) + 1", "    return counts"])

    def own_reference(self, p, c, s):
        out: dict = {}
        for w in (s if c["case"] == "sensitive" else s.lower()).split():
            if w != p["skip"]:
                out[w] = out.get(w, 0) + 1
        return out

    def own_edges(self, p, rng):
        w = rng.choice([x for x in WORDS if x != p["skip"]])
        return [("",), (f"{p['skip']} {w} {w.capitalize()} {p['skip'].capitalize()}",), (p["skip"],)]

    def draw(self, p, rng):
        pool = rng.sample(WORDS, 3) + [p["skip"]]
        return (" ".join(rng.choice(pool) for _ in range(rng.randint(1, 6))),)


class UniquePast(Family):
    name, category, levels = "unique_past", "lists", (2,)
    on_empty_levels = (2,)

    def space(self, level):
        return [{"level": 2, "dir": d, "k": k} for d in ("above", "below") for k in range(2, 32)]

    def own_convs(self, level):
        return (BOUND, KEEP)

    def fn_names(self, core):
        d = core["dir"]
        return (f"unique_{d}", f"distinct_{d}", f"dedupe_{d}")

    def whats(self, p):
        return (f"the distinct numbers of {{a}} that {PAST_WORDS[p['dir']][0]} {p['k']}, in order",
                f"each number of {{a}} that {PAST_WORD[p['dir']][1]} {p['k']}, listed once, in order")

    def own_solution(self, p, c):
        a, test = p["args"][0], f"x {cmp_op(p['dir'], c['bound'])} {p['k']}"
        if c["keep"] == "first":
            body = [f"        if {test} and x not in out:", "            out.append(x)"]
        else:
            body = [f"        if {test}:", "            if x in out:", "                out.remove(x)", "            out.append(x)"]
        return fmt([f"def {p['fn']}({a}):", "    out = []", f"    for x in {a}:", *body, "    return out"])

    def own_reference(self, p, c, xs):
        hits = [x for x in xs if passes(x, p["k"], p["dir"], c["bound"])]
        if c["keep"] == "last":
            hits = hits[::-1]
        out = []
        for x in hits:
            if x not in out:
                out.append(x)
        return out if c["keep"] == "first" else out[::-1]

    def own_edges(self, p, rng):
        k, s = p["k"], 1 if p["dir"] == "above" else -1
        return [([],), ([k + s, k + 3 * s, k + s],), (shuffled(rng, [k - s, k, k + s, k]),), ([k + 2 * s, k - 2 * s],)]

    def draw(self, p, rng):
        return (ints(rng, max(0, p["k"] - 4), p["k"] + 4, 1, 7),)


class Grades(Family):
    name, category, levels = "grades", "branches", (3,)
    on_empty_levels = (3,)
    arg_pools = (("scores", "marks", "points"),)

    def space(self, level):
        return [{"level": 3, "lo": lo, "hi": lo + gap, "words": list(ws)} for ws in GRADE_WORDS for gap in (10, 20, 30)
                for lo in range(10, 50)]

    def own_convs(self, level):
        return (CUTOFF, FALLBACK)

    def fn_names(self, core):
        return ("grades", "grade_all", "rank_scores")

    def whats(self, p):
        (w1, w2), lo, hi = p["words"], p["lo"], p["hi"]
        return (f"a list with a label for each score in {{a}}: '{w1}' for scores past {hi}, '{w2}' for scores past {lo}, "
                "and a fallback label for the rest",
                f"one label per score of {{a}}: '{w1}' past {hi}, '{w2}' past {lo}, otherwise the fallback label")

    def own_solution(self, p, c):
        a, (w1, w2), op = p["args"][0], p["words"], cmp_op("above", c["bound"])
        return fmt([f"def {p['fn']}({a}):", "    out = []", f"    for x in {a}:", f"        if x {op} {p['hi']}:",
                    f"            out.append({w1!r})", f"        elif x {op} {p['lo']}:", f"            out.append({w2!r})",
                    "        else:", f"            out.append({c['fallback']!r})", "    return out"])

    def own_reference(self, p, c, xs):
        (w1, w2), out = p["words"], []
        for x in xs:
            if passes(x, p["hi"], "above", c["bound"]):
                out.append(w1)
            elif passes(x, p["lo"], "above", c["bound"]):
                out.append(w2)
            else:
                out.append(c["fallback"])
        return out

    def own_edges(self, p, rng):
        lo, hi = p["lo"], p["hi"]
        return [([],), ([hi, lo],), ([hi + 1, lo + 1, lo - 1],), ([hi - 1, lo - 5],)]

    def draw(self, p, rng):
        return (ints(rng, p["lo"] - 8, p["hi"] + 8, 1, 5),)


FAMILIES: list[Family] = [InvertPast(), ClosestKey(), GroupBy(), Restock(), LetterCounts(), WordFreq(), UniquePast(), Grades()]
