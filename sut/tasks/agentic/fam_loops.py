"""Agentic families with while loops, nested loops, branches on labels and index arithmetic:
growth to a limit, labelled counting, a running balance, runs, pairs, every n-th item, padding
and rotation."""
from __future__ import annotations

import math

from sut.tasks.agentic.family import BOUND, PAST_WORDS, Conv, Family, cmp_op, fmt, ints, passes

LIMIT = Conv("bound", ("exclusive", "inclusive"), "a start value equal to the limit")
PATH_START = Conv("start", ("included", "excluded"), "any start value: the list begins with it or not")
COUNT_FROM = Conv("start", (1, 0), "any n of 1 or more: counting starts at 0 or 1")
BOTH = Conv("both", ("joined", "first"), "a multiple of both numbers")
OVERDRAFT = Conv("overdraft", ("allow", "skip_below_zero", "skip_at_zero"),
                 "a withdrawal larger than the balance, and one equal to it")
SELF = Conv("self", ("no", "yes"), "a number that is half the target")
NTH = Conv("base", ("first_is_1", "first_is_0"), "a list long enough to have a replaced item")
SIDE = Conv("side", ("left", "right"), "a number shorter than the width")
DIRECTION = Conv("direction", ("left", "right"), "a list whose rotation differs either way")
LABELS = ("moon", "star", "sun", "tree", "fox", "key", "lamp", "oak")
_ORD = {2: "2nd", 3: "3rd", 4: "4th", 5: "5th", 6: "6th"}


class GrowUntil(Family):
    name, category, levels = "grow_until", "loops", (1, 2)
    arg_pools = (("n", "start", "x"),)

    def space(self, level):
        return [{"level": level, "factor": f, "limit": lim} for f in (2, 3) for lim in range(10, 60)]

    def own_convs(self, level):
        return (LIMIT,) if level == 1 else (LIMIT, PATH_START)

    def fn_names(self, core):
        if core["level"] == 1:
            return ("doublings", "count_doubles", "times_doubled") if core["factor"] == 2 else (
                "triplings", "count_triples", "times_tripled")
        return ("double_steps", "doubling_path", "double_list") if core["factor"] == 2 else (
            "triple_steps", "tripling_path", "triple_list")

    def whats(self, p):
        verb, noun = ("doubled", "doublings") if p["factor"] == 2 else ("tripled", "triplings")
        lim = p["limit"]
        if p["level"] == 1:
            return (f"how many times {{a}} must be {verb} to pass the limit {lim}",
                    f"the number of {noun} it takes for {{a}} to get past {lim}")
        return (f"the values {{a}} takes while it is {verb} until it passes the limit {lim}",
                f"the list of numbers from {{a}}, {verb} each step, until past {lim}")

    def own_solution(self, p, c):
        a, f, lim = p["args"][0], p["factor"], p["limit"]
        test = f"    while {a} {'<=' if c['bound'] == 'exclusive' else '<'} {lim}:"
        if p["level"] == 1:
            return fmt([f"def {p['fn']}({a}):", "    count = 0", test, f"        {a} *= {f}", "        count += 1",
                        "    return count"])
        out = f"    out = [{a}]" if c["start"] == "included" else "    out = []"
        return fmt([f"def {p['fn']}({a}):", out, test, f"        {a} *= {f}", f"        out.append({a})", "    return out"])

    def own_reference(self, p, c, n):
        out = [n] if c.get("start") == "included" else []
        count = 0
        while n <= p["limit"] if c["bound"] == "exclusive" else n < p["limit"]:
            n *= p["factor"]
            count += 1
            out.append(n)
        return count if p["level"] == 1 else out

    def own_edges(self, p, rng):
        lim = p["limit"]
        return [(lim,), (lim - 1,), (lim + 1,), (1,)]

    def draw(self, p, rng):
        return (rng.randint(1, p["limit"] + 3),)


class FizzLabels(Family):
    name, category, levels = "fizz_labels", "branches", (2, 3)
    arg_pools = (("n", "count", "size"),)

    def space(self, level):
        if level == 2:
            return [{"level": 2, "k": k, "word": w} for k in range(2, 8) for w in LABELS]
        pairs = [(a, b) for a in range(2, 7) for b in range(2, 7) if a % b and b % a and math.lcm(a, b) <= 12]
        return [{"level": 3, "a": a, "b": b, "w1": w1, "w2": w2} for a, b in pairs for w1 in LABELS for w2 in LABELS
                if w1 != w2]

    def own_convs(self, level):
        return (COUNT_FROM,) if level == 2 else (COUNT_FROM, BOTH)

    def fn_names(self, core):
        return ("labels", "tag_numbers", "mark_multiples")

    def whats(self, p):
        if p["level"] == 2:
            rule = f"'{p['word']}' for multiples of {p['k']}"
        else:
            rule = f"'{p['w1']}' for multiples of {p['a']}, '{p['w2']}' for multiples of {p['b']}"
        return (f"a list of strings for the first {{a}} numbers: {rule}, else the number as a string",
                f"one string per number for the first {{a}} numbers: {rule}, otherwise the number written out")

    def own_solution(self, p, c):
        a = p["args"][0]
        loop = f"    for i in range(1, {a} + 1):" if c["start"] == 1 else f"    for i in range({a}):"
        if p["level"] == 2:
            branches = [f"        if i % {p['k']} == 0:", f"            out.append({p['word']!r})"]
        else:
            x, y, w1, w2 = p["a"], p["b"], p["w1"], p["w2"]
            if c["both"] == "joined":
                branches = [f"        if i % {x} == 0 and i % {y} == 0:", f"            out.append({w1 + w2!r})",
                            f"        elif i % {x} == 0:"]
            else:
                branches = [f"        if i % {x} == 0:"]
            branches += [f"            out.append({w1!r})", f"        elif i % {y} == 0:", f"            out.append({w2!r})"]
        return fmt([f"def {p['fn']}({a}):", "    out = []", loop, *branches, "        else:",
                    "            out.append(str(i))", "    return out"])

    def own_reference(self, p, c, n):
        out = []
        for i in range(c["start"], n + c["start"]):
            if p["level"] == 2:
                out.append(p["word"] if i % p["k"] == 0 else str(i))
            elif i % p["a"] == 0 and i % p["b"] == 0 and c["both"] == "joined":
                out.append(p["w1"] + p["w2"])
            elif i % p["a"] == 0:
                out.append(p["w1"])
            elif i % p["b"] == 0:
                out.append(p["w2"])
            else:
                out.append(str(i))
        return out

    def own_edges(self, p, rng):
        m = p["k"] if p["level"] == 2 else math.lcm(p["a"], p["b"])
        return [(0,), (m,), (m + 1,), (1,)]

    def draw(self, p, rng):
        return (rng.randint(2, 13),)


class Settle(Family):
    name, category, levels = "settle", "branches", (2,)
    on_empty_levels = (2,)
    arg_pools = (("ops", "moves", "log"),)
    OPS = (("in", "out"), ("add", "take"), ("put", "get"))

    def space(self, level):
        return [{"level": 2, "start": k, "ops": list(ops)} for ops in self.OPS for k in range(5, 55)]

    def own_convs(self, level):
        return (OVERDRAFT,)

    def fn_names(self, core):
        return ("settle", "final_balance", "apply_ops")

    def whats(self, p):
        return (f"the balance after applying {{a}} to a balance that starts at {p['start']}",
                f"the final balance when {{a}} is applied to a starting balance of {p['start']}")

    def extra(self, p):
        w_in, w_out = p["ops"]
        return f"Each item is a pair: ('{w_in}', amount) adds the amount, ('{w_out}', amount) takes it away."

    def own_solution(self, p, c):
        a, (w_in, _w_out) = p["args"][0], p["ops"]
        if c["overdraft"] == "allow":
            take = ["        else:", "            balance -= x"]
        else:
            take = [f"        elif x {'<=' if c['overdraft'] == 'skip_below_zero' else '<'} balance:", "            balance -= x"]
        return fmt([f"def {p['fn']}({a}):", f"    balance = {p['start']}", f"    for op, x in {a}:",
                    f"        if op == {w_in!r}:", "            balance += x", *take, "    return balance"])

    def own_reference(self, p, c, ops):
        balance = p["start"]
        for op, x in ops:
            if op == p["ops"][0]:
                balance += x
            elif c["overdraft"] == "allow" or x < balance or (x == balance and c["overdraft"] == "skip_below_zero"):
                balance -= x
        return balance

    def own_edges(self, p, rng):
        w_in, w_out = p["ops"]
        k = p["start"]
        return [([],), ([(w_out, k)],), ([(w_out, k + 3)],), ([(w_in, 4), (w_out, k + 4), (w_out, 1)],)]

    def draw(self, p, rng):
        return ([(rng.choice(p["ops"]), rng.randint(1, p["start"] + 5)) for _ in range(rng.randint(1, 5))],)


class LongestRun(Family):
    name, category, levels = "longest_run", "loops", (2,)
    on_empty_levels = (2,)

    def space(self, level):
        return [{"level": 2, "dir": d, "k": k} for d in ("above", "below") for k in range(3, 33)]

    def own_convs(self, level):
        return (BOUND,)

    def fn_names(self, core):
        d = core["dir"]
        return (f"longest_{d}", f"run_{d}", f"streak_{d}")

    def whats(self, p):
        w0, w1 = PAST_WORDS[p["dir"]]
        return (f"the length of the longest run of neighbouring numbers in {{a}} that {w0} {p['k']}",
                f"the size of the longest unbroken stretch of elements of {{a}} that {w1} {p['k']}")

    def own_solution(self, p, c):
        a = p["args"][0]
        return fmt([f"def {p['fn']}({a}):", "    best = 0", "    cur = 0", f"    for x in {a}:",
                    f"        if x {cmp_op(p['dir'], c['bound'])} {p['k']}:", "            cur += 1", "        else:",
                    "            cur = 0", "        best = max(best, cur)", "    return best"])

    def own_reference(self, p, c, xs):
        best = cur = 0
        for x in xs:
            cur = cur + 1 if passes(x, p["k"], p["dir"], c["bound"]) else 0
            best = max(best, cur)
        return best

    def own_edges(self, p, rng):
        k, s = p["k"], 1 if p["dir"] == "above" else -1
        return [([],), ([k + s, k, k + s, k + 2 * s],), ([k + 3 * s, k - 2 * s, k + 3 * s],), ([k, k, k - s],),
                ([k + 2 * s, k + 2 * s, k - 2 * s],)]

    def draw(self, p, rng):
        return (ints(rng, p["k"] - 3, p["k"] + 3, 2, 7),)


class CountPairs(Family):
    name, category, levels = "count_pairs", "loops", (2,)
    on_empty_levels = (2,)

    def space(self, level):
        return [{"level": 2, "k": k} for k in range(4, 84, 2)]

    def own_convs(self, level):
        return (SELF,)

    def fn_names(self, core):
        return ("count_pairs", "pairs_to", "pair_count")

    def whats(self, p):
        return (f"how many pairs of positions in {{a}} hold numbers that add up to {p['k']}",
                f"the number of index pairs in {{a}} whose elements sum to {p['k']}")

    def own_solution(self, p, c):
        a = p["args"][0]
        rest = f"{a}[i + 1:]" if c["self"] == "no" else f"{a}[i:]"
        return fmt([f"def {p['fn']}({a}):", "    count = 0", f"    for i, x in enumerate({a}):", f"        for y in {rest}:",
                    f"            if x + y == {p['k']}:", "                count += 1", "    return count"])

    def own_reference(self, p, c, xs):
        lo = 0 if c["self"] == "yes" else 1
        return sum(1 for i in range(len(xs)) for j in range(i + lo, len(xs)) if xs[i] + xs[j] == p["k"])

    def own_edges(self, p, rng):
        h = p["k"] // 2
        return [([],), ([h],), ([h, h],), ([h - 1, h + 1, h + 1],), ([h + 2, h - 1, h - 2],)]

    def draw(self, p, rng):
        h = p["k"] // 2
        return (ints(rng, max(0, h - 5), h + 5, 2, 6),)


class EveryNth(Family):
    name, category, levels = "every_nth", "lists", (1,)
    on_empty_levels = (1,)

    def space(self, level):
        return [{"level": 1, "k": k, "v": v} for k in range(2, 7) for v in range(0, 10)]

    def own_convs(self, level):
        return (NTH,)

    def fn_names(self, core):
        return ("every_nth", "replace_nth", "mark_every")

    def whats(self, p):
        nth = _ORD[p["k"]]
        return (f"{{a}} with every {nth} number replaced by {p['v']}",
                f"a copy of {{a}} in which every {nth} element becomes {p['v']}")

    def own_solution(self, p, c):
        a, k = p["args"][0], p["k"]
        test = f"(i + 1) % {k} == 0" if c["base"] == "first_is_1" else f"i % {k} == 0"
        return fmt([f"def {p['fn']}({a}):", "    out = []", f"    for i in range(len({a})):", f"        if {test}:",
                    f"            out.append({p['v']})", "        else:", f"            out.append({a}[i])", "    return out"])

    def own_reference(self, p, c, xs):
        off = 1 if c["base"] == "first_is_1" else 0
        return [p["v"] if (i + off) % p["k"] == 0 else x for i, x in enumerate(xs)]

    def own_edges(self, p, rng):
        k = p["k"]
        return [([],), (ints(rng, 10, 40, 2 * k + 1, 2 * k + 1),), (ints(rng, 10, 40, k - 1, k - 1),)]

    def draw(self, p, rng):
        return (ints(rng, 10, 40, 1, 2 * p["k"] + 2),)


class Pad(Family):
    name, category, levels = "pad", "strings", (1,)
    arg_pools = (("n", "num", "x"),)

    def space(self, level):
        return [{"level": 1, "width": w, "fill": f} for w in range(3, 10) for f in "0*._#"]

    def own_convs(self, level):
        return (SIDE,)

    def fn_names(self, core):
        return ("pad", "fill", "pad_number")

    def whats(self, p):
        return (f"{{a}} as a string padded with '{p['fill']}' to {p['width']} characters",
                f"the text of {{a}}, filled out with '{p['fill']}' to a width of {p['width']}")

    def own_solution(self, p, c):
        a, f = p["args"][0], p["fill"]
        grow = f"        s = {f!r} + s" if c["side"] == "left" else f"        s = s + {f!r}"
        return fmt([f"def {p['fn']}({a}):", f"    s = str({a})", f"    while len(s) < {p['width']}:", grow, "    return s"])

    def own_reference(self, p, c, n):
        s = str(n)
        return s.rjust(p["width"], p["fill"]) if c["side"] == "left" else s.ljust(p["width"], p["fill"])

    def own_edges(self, p, rng):
        w = p["width"]
        return [(rng.randint(1, 9),), (10 ** (w - 1),), (10 ** w,), (10 ** (w - 2) + 7,)]

    def draw(self, p, rng):
        return (rng.randint(0, 10 ** rng.randint(1, p["width"] + 1)),)


class Rotate(Family):
    name, category, levels = "rotate", "lists", (1,)
    on_empty_levels = (1,)

    def space(self, level):
        return [{"level": 1, "k": k} for k in range(1, 31)]

    def own_convs(self, level):
        return (DIRECTION,)

    def fn_names(self, core):
        return ("rotate", "shift", "turn")

    def whats(self, p):
        return (f"{{a}} rotated by {p['k']} places", f"the elements of {{a}} shifted round by {p['k']} positions")

    def own_solution(self, p, c):
        a = p["args"][0]
        out = f"{a}[n:] + {a}[:n]" if c["direction"] == "left" else f"{a}[-n:] + {a}[:-n]"
        return fmt([f"def {p['fn']}({a}):", f"    if not {a}:", "        return []", f"    n = {p['k']} % len({a})",
                    f"    return {out}"])

    def own_reference(self, p, c, xs):
        if not xs:
            return []
        n = p["k"] % len(xs)
        return xs[n:] + xs[:n] if c["direction"] == "left" else xs[len(xs) - n:] + xs[:len(xs) - n]

    def own_edges(self, p, rng):
        sizes = [m for m in range(3, 9) if p["k"] % m and 2 * (p["k"] % m) != m]
        return [([],), (rng.sample(range(30), rng.choice(sizes)),), ([rng.randint(0, 29)],)]

    def draw(self, p, rng):
        return (rng.sample(range(30), rng.randint(2, 7)),)


FAMILIES: list[Family] = [GrowUntil(), FizzLabels(), Settle(), LongestRun(), CountPairs(), EveryNth(), Pad(), Rotate()]
