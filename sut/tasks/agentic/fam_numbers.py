"""Agentic families over lists of numbers: thresholds, first matches, nearest values, running
state, neighbour steps, averages and ranges."""
from __future__ import annotations

from typing import Any

from sut.tasks.agentic.family import BOUND, PAST_WORD, PAST_WORDS, Conv, Family, cmp_op, fmt, ints, passes, shuffled

NONE_SUM = Conv("none", (0, -1, None), "a list where no element passes")
NONE = Conv("none", (-1, None), "a list without a match")
TIE = Conv("tie", ("first", "last"), "two equally good candidates")
EMPTY = Conv("empty", (None, -1), "an empty list")
BASE = Conv("base", (0, 1), "any list holding the value")
START = Conv("start", ("excluded", "included"), "any list: the start value leads the output or not")
STEP_BOUND = Conv("bound", ("exclusive", "inclusive"), "a step whose size equals the threshold")
ORDER = Conv("order", ("next_minus_prev", "prev_minus_next"), "a rising step that passes")
ROUNDING = Conv("rounding", ("floor", "round"), "an average whose fraction is above one half")
MEAN_EMPTY = Conv("empty", (None, 0), "a list where no element passes")
LO = Conv("lo", ("inclusive", "exclusive"), "a range that starts on a multiple")
HI = Conv("hi", ("inclusive", "exclusive"), "a range that ends on a multiple")


def _ret(value: Any) -> str:
    return repr(value)


def _no_match(p: dict[str, Any]) -> list[int]:
    """A list that passes under neither bound."""
    k = p["k"]
    return [k - 2, k - 1] if p["dir"] == "above" else [k + 3, k + 1]


def _near(p: dict[str, Any]) -> list[int]:
    """k-1, k, k+1 in the order where the first passing element depends on the bound."""
    k = p["k"]
    return [k - 1, k, k + 1] if p["dir"] == "above" else [k + 1, k, k - 1]


class CountPast(Family):
    name, category, levels = "count_past", "accumulators", (1, 2)
    on_empty_levels = (1,)

    def space(self, level):
        return [{"level": level, "dir": d, "k": k} for d in ("above", "below") for k in range(2, 42)]

    def own_convs(self, level):
        return (BOUND,) if level == 1 else (BOUND, NONE_SUM)

    def fn_names(self, core):
        d = core["dir"]
        if core["level"] == 1:
            return ("count_above", "num_above", "count_over") if d == "above" else ("count_below", "num_below", "count_under")
        return ("sum_above", "total_above", "add_above") if d == "above" else ("sum_below", "total_below", "add_below")

    def whats(self, p):
        w0, w1 = PAST_WORDS[p["dir"]]
        if p["level"] == 1:
            return (f"how many numbers in {{a}} {w0} {p['k']}", f"the count of elements of {{a}} that {w1} {p['k']}")
        return (f"the sum of the numbers in {{a}} that {w0} {p['k']}", f"the total of the elements of {{a}} that {w1} {p['k']}")

    def own_solution(self, p, c):
        a, op, k = p["args"][0], cmp_op(p["dir"], c["bound"]), p["k"]
        if p["level"] == 1:
            return fmt([f"def {p['fn']}({a}):", "    count = 0", f"    for x in {a}:", f"        if x {op} {k}:",
                        "            count += 1", "    return count"])
        if c["none"] == 0:
            return fmt([f"def {p['fn']}({a}):", "    total = 0", f"    for x in {a}:", f"        if x {op} {k}:",
                        "            total += x", "    return total"])
        return fmt([f"def {p['fn']}({a}):", "    total = 0", "    found = False", f"    for x in {a}:",
                    f"        if x {op} {k}:", "            total += x", "            found = True",
                    "    if not found:", f"        return {_ret(c['none'])}", "    return total"])

    def own_reference(self, p, c, xs):
        hits = [x for x in xs if passes(x, p["k"], p["dir"], c["bound"])]
        if p["level"] == 1:
            return len(hits)
        return sum(hits) if hits else c["none"]

    def own_edges(self, p, rng):
        return [([],), (shuffled(rng, _near(p)),), (_no_match(p),), ([p["k"], p["k"]],)]

    def draw(self, p, rng):
        return (ints(rng, max(0, p["k"] - 6), p["k"] + 6, 1, 6),)


class FirstPast(Family):
    name, category, levels = "first_past", "early_return", (1, 2)

    def space(self, level):
        return [{"level": level, "dir": d, "k": k} for d in ("above", "below") for k in range(2, 42)]

    def own_convs(self, level):
        return (BOUND, NONE)

    def fn_names(self, core):
        d = "above" if core["dir"] == "above" else "below"
        if core["level"] == 1:
            return (f"first_{d}", f"find_{d}", f"first_{'over' if d == 'above' else 'under'}")
        return (f"index_{d}", f"where_{d}", f"pos_{d}")

    def whats(self, p):
        w0, w1 = PAST_WORD[p["dir"]]
        if p["level"] == 1:
            return (f"the first number in {{a}} that {w0} {p['k']}", f"the earliest element of {{a}} that {w1} {p['k']}")
        return (f"the position of the first number in {{a}} that {w0} {p['k']}",
                f"the index of the earliest element of {{a}} that {w1} {p['k']}")

    def own_solution(self, p, c):
        a, op, k = p["args"][0], cmp_op(p["dir"], c["bound"]), p["k"]
        if p["level"] == 1:
            body = [f"    for x in {a}:", f"        if x {op} {k}:", "            return x"]
        else:
            body = [f"    for i in range(len({a})):", f"        if {a}[i] {op} {k}:", "            return i"]
        return fmt([f"def {p['fn']}({a}):", *body, f"    return {_ret(c['none'])}"])

    def own_reference(self, p, c, xs):
        for i, x in enumerate(xs):
            if passes(x, p["k"], p["dir"], c["bound"]):
                return x if p["level"] == 1 else i
        return c["none"]

    def own_edges(self, p, rng):
        k = p["k"]
        first, last = ([k + 5, k - 1], [k - 1, k + 2]) if p["dir"] == "above" else ([k - 1, k + 5], [k + 1, k - 2])
        return [([],), (_near(p),), (_no_match(p),), (first,), (last,)]

    def draw(self, p, rng):
        return (ints(rng, max(0, p["k"] - 6), p["k"] + 6, 1, 6),)


class FindValue(Family):
    name, category, levels = "find_value", "early_return", (1, 2)
    on_empty_levels = (2,)
    difficulty = {1: 2, 2: 1}

    def space(self, level):
        return [{"level": level, "k": k} for k in range(0, 50)]

    def own_convs(self, level):
        return (TIE, NONE) if level == 1 else (BASE,)

    def fn_names(self, core):
        return ("find", "index_of", "position") if core["level"] == 1 else ("positions", "find_all", "where")

    def whats(self, p):
        if p["level"] == 1:
            return (f"the position of {p['k']} in {{a}}", f"the index where {p['k']} appears in {{a}}")
        return (f"the positions of {p['k']} in {{a}}", f"the list of indexes where {p['k']} appears in {{a}}")

    def own_solution(self, p, c):
        a, k, head = p["args"][0], p["k"], f"def {p['fn']}({p['args'][0]}):"
        loop = [f"    for i in range(len({a})):", f"        if {a}[i] == {k}:"]
        if p["level"] == 2:
            step = "i" if c["base"] == 0 else "i + 1"
            return fmt([head, "    out = []", *loop, f"            out.append({step})", "    return out"])
        if c["tie"] == "first":
            return fmt([head, *loop, "            return i", f"    return {_ret(c['none'])}"])
        return fmt([head, f"    found = {_ret(c['none'])}", *loop, "            found = i", "    return found"])

    def own_reference(self, p, c, xs):
        hits = [i for i, x in enumerate(xs) if x == p["k"]]
        if p["level"] == 2:
            return [i + c["base"] for i in hits]
        if not hits:
            return c["none"]
        return hits[0] if c["tie"] == "first" else hits[-1]

    def _other(self, p, rng):
        return rng.choice([v for v in range(max(0, p["k"] - 5), p["k"] + 6) if v != p["k"]])

    def own_edges(self, p, rng):
        k, o = p["k"], lambda: self._other(p, rng)
        return [([],), ([o(), o()],), ([o(), k, o(), k],), ([k],), ([k, o(), k + 1],)]

    def draw(self, p, rng):
        return ([p["k"] if rng.random() < 0.3 else self._other(p, rng) for _ in range(rng.randint(1, 6))],)


class ClosestTo(Family):
    name, category, levels = "closest_to", "loops", (1, 2)

    def space(self, level):
        return [{"level": level, "k": k} for k in range(3, 63)]

    def own_convs(self, level):
        return (TIE, EMPTY)

    def fn_names(self, core):
        return ("closest", "nearest", "closest_to") if core["level"] == 1 else ("closest_index", "nearest_index", "where_closest")

    def whats(self, p):
        k = p["k"]
        if p["level"] == 1:
            return (f"the number in {{a}} closest to {k}", f"the element of {{a}} nearest to {k}")
        return (f"the position of the number in {{a}} closest to {k}", f"the index of the element of {{a}} nearest to {k}")

    def own_solution(self, p, c):
        a, k, op = p["args"][0], p["k"], "<" if c["tie"] == "first" else "<="
        head = [f"def {p['fn']}({a}):", f"    if not {a}:", f"        return {_ret(c['empty'])}"]
        if p["level"] == 1:
            return fmt([*head, f"    best = {a}[0]", f"    for x in {a}:", f"        if abs(x - {k}) {op} abs(best - {k}):",
                        "            best = x", "    return best"])
        return fmt([*head, "    best = 0", f"    for i in range(len({a})):",
                    f"        if abs({a}[i] - {k}) {op} abs({a}[best] - {k}):", "            best = i", "    return best"])

    def own_reference(self, p, c, xs):
        if not xs:
            return c["empty"]
        dist = [abs(x - p["k"]) for x in xs]
        idx = [i for i, d in enumerate(dist) if d == min(dist)]
        i = idx[0] if c["tie"] == "first" else idx[-1]
        return xs[i] if p["level"] == 1 else i

    def own_edges(self, p, rng):
        k, d = p["k"], rng.randint(1, 3)
        return [([],), ([k - d, k + d],), ([k + 9, k + d, k - d],), ([k + 1],), ([k + 4, k - 2, k + 1],)]

    def draw(self, p, rng):
        return (ints(rng, max(0, p["k"] - 8), p["k"] + 8, 1, 6),)


class Running(Family):
    name, category = "running", "lists"
    on_empty_levels = (1,)

    def space(self, level):
        return [{"level": level, "op": op, "k": k} for op in ("total", "maximum") for k in range(1, 31)]

    def own_convs(self, level):
        return (START,)

    def fn_names(self, core):
        return ("running_total", "prefix_sums", "cumulative") if core["op"] == "total" else (
            "running_max", "peak_so_far", "max_so_far")

    def whats(self, p):
        k = p["k"]
        if p["op"] == "total":
            return (f"the running totals of {{a}}, starting from {k}", f"the list of cumulative sums of {{a}}, counting from {k}")
        return (f"the running maximum of {{a}}, starting from {k}", f"the list of the largest number so far in {{a}}, starting from {k}")

    def own_solution(self, p, c):
        a = p["args"][0]
        step = "        cur += x" if p["op"] == "total" else "        cur = max(cur, x)"
        out = "    out = []" if c["start"] == "excluded" else "    out = [cur]"
        return fmt([f"def {p['fn']}({a}):", f"    cur = {p['k']}", out, f"    for x in {a}:", step, "        out.append(cur)",
                    "    return out"])

    def own_reference(self, p, c, xs):
        cur, out = p["k"], []
        if c["start"] == "included":
            out.append(cur)
        for x in xs:
            cur = cur + x if p["op"] == "total" else max(cur, x)
            out.append(cur)
        return out

    def own_edges(self, p, rng):
        k = p["k"]
        return [([],), ([k - 1],), ([k - 1, k + 2, k],), ([0, k + 1, 1],)]

    def draw(self, p, rng):
        return (ints(rng, 0, p["k"] + 8, 1, 5),)


class NeighbourGaps(Family):
    name, category, levels = "neighbour_gaps", "loops", (1, 2)
    on_empty_levels = (1, 2)

    def space(self, level):
        return [{"level": level, "k": k} for k in range(1, 31)]

    def own_convs(self, level):
        return (STEP_BOUND,) if level == 1 else (ORDER, STEP_BOUND)

    def fn_names(self, core):
        return ("count_jumps", "big_steps", "num_jumps") if core["level"] == 1 else ("big_gaps", "jumps", "steps_over")

    def whats(self, p):
        k = p["k"]
        if p["level"] == 1:
            return (f"how many steps between neighbours in {{a}} pass the threshold {k} in size",
                    f"the number of neighbouring pairs in {{a}} whose difference clears the mark {k} in size")
        return (f"the differences between neighbours in {{a}} whose size passes the threshold {k}",
                f"the steps between neighbouring elements of {{a}} that clear the mark {k} in size")

    def own_solution(self, p, c):
        a, k, op = p["args"][0], p["k"], cmp_op("above", c["bound"])
        loop = f"    for i in range(len({a}) - 1):"
        if p["level"] == 1:
            return fmt([f"def {p['fn']}({a}):", "    count = 0", loop, f"        if abs({a}[i + 1] - {a}[i]) {op} {k}:",
                        "            count += 1", "    return count"])
        diff = f"{a}[i + 1] - {a}[i]" if c["order"] == "next_minus_prev" else f"{a}[i] - {a}[i + 1]"
        return fmt([f"def {p['fn']}({a}):", "    out = []", loop, f"        d = {diff}", f"        if abs(d) {op} {k}:",
                    "            out.append(d)", "    return out"])

    def own_reference(self, p, c, xs):
        diffs = [xs[i + 1] - xs[i] for i in range(len(xs) - 1)]
        if c.get("order") == "prev_minus_next":
            diffs = [-d for d in diffs]
        big = [d for d in diffs if passes(abs(d), p["k"], "above", c["bound"])]
        return len(big) if p["level"] == 1 else big

    def own_edges(self, p, rng):
        k, b = p["k"], rng.randint(0, 9)
        return [([],), ([b],), ([b, b + k, b],), ([b, b + k + 2],), ([b, b + k - 1, b + 2 * k],)]

    def draw(self, p, rng):
        return (ints(rng, 0, 3 * p["k"] + 6, 2, 6),)


class MeanPast(Family):
    name, category, levels = "mean_past", "branches", (3,)

    def space(self, level):
        return [{"level": level, "dir": d, "k": k} for d in ("above", "below") for k in range(4, 44)]

    def own_convs(self, level):
        return (BOUND, ROUNDING, MEAN_EMPTY)

    def fn_names(self, core):
        return ("mean_above", "avg_above", "average_over") if core["dir"] == "above" else (
            "mean_below", "avg_below", "average_under")

    def whats(self, p):
        w0, w1 = PAST_WORDS[p["dir"]]
        return (f"the average of the numbers in {{a}} that {w0} {p['k']}, as a whole number",
                f"the mean of the elements of {{a}} that {w1} {p['k']}, as an integer")

    def own_solution(self, p, c):
        a, op, k = p["args"][0], cmp_op(p["dir"], c["bound"]), p["k"]
        result = "total // count" if c["rounding"] == "floor" else "round(total / count)"
        return fmt([f"def {p['fn']}({a}):", "    total = 0", "    count = 0", f"    for x in {a}:", f"        if x {op} {k}:",
                    "            total += x", "            count += 1", "    if not count:",
                    f"        return {_ret(c['empty'])}", f"    return {result}"])

    def own_reference(self, p, c, xs):
        hits = [x for x in xs if passes(x, p["k"], p["dir"], c["bound"])]
        if not hits:
            return c["empty"]
        return sum(hits) // len(hits) if c["rounding"] == "floor" else round(sum(hits) / len(hits))

    def own_edges(self, p, rng):
        k = p["k"]
        frac = [k + 1, k + 2, k + 2] if p["dir"] == "above" else [k - 1, k - 1, k - 2]
        one = [k + 3, k - 1] if p["dir"] == "above" else [k - 3, k + 1]
        tie = [k, k + 4] if p["dir"] == "above" else [k, k - 4]
        return [([],), (shuffled(rng, _near(p)),), (_no_match(p),), (shuffled(rng, frac),), (one,), (shuffled(rng, tie),)]

    def draw(self, p, rng):
        return (ints(rng, max(0, p["k"] - 8), p["k"] + 8, 1, 6),)


class RangeSum(Family):
    name, category, levels = "range_sum", "loops", (2,)
    arg_pools = (("lo", "start", "a"), ("hi", "end", "b"))

    def space(self, level):
        return [{"level": level, "op": op, "k": k} for op in ("sum", "count") for k in range(2, 32)]

    def own_convs(self, level):
        return (LO, HI)

    def fn_names(self, core):
        return ("sum_multiples", "add_multiples", "multiple_sum") if core["op"] == "sum" else (
            "count_multiples", "num_multiples", "multiples_between")

    def whats(self, p):
        k = p["k"]
        if p["op"] == "sum":
            return (f"the sum of the multiples of {k} from {{a}} to {{b}}",
                    f"the total of the numbers between {{a}} and {{b}} that are divisible by {k}")
        return (f"how many multiples of {k} lie from {{a}} to {{b}}",
                f"the count of numbers between {{a}} and {{b}} that are divisible by {k}")

    def own_solution(self, p, c):
        a, b = p["args"]
        lo = a if c["lo"] == "inclusive" else f"{a} + 1"
        hi = f"{b} + 1" if c["hi"] == "inclusive" else b
        var, step = ("total", "n") if p["op"] == "sum" else ("count", "1")
        return fmt([f"def {p['fn']}({a}, {b}):", f"    {var} = 0", f"    for n in range({lo}, {hi}):",
                    f"        if n % {p['k']} == 0:", f"            {var} += {step}", f"    return {var}"])

    def own_reference(self, p, c, lo, hi):
        start = lo if c["lo"] == "inclusive" else lo + 1
        stop = hi + 1 if c["hi"] == "inclusive" else hi
        hits = [n for n in range(start, stop) if n % p["k"] == 0]
        return sum(hits) if p["op"] == "sum" else len(hits)

    def own_edges(self, p, rng):
        k, m = p["k"], rng.randint(1, 3)
        n = m + rng.randint(1, 3)
        return [(m * k, n * k), (m * k + 1, n * k - 1), (m * k - 1, n * k + 1), (n * k, m * k), (k, k)]

    def draw(self, p, rng):
        lo = rng.randint(0, 3 * p["k"])
        return (lo, lo + rng.randint(0, 4 * p["k"]))


FAMILIES: list[Family] = [CountPast(), FirstPast(), FindValue(), ClosestTo(), Running(), NeighbourGaps(), MeanPast(),
                          RangeSum()]
