"""Task families over numbers: arithmetic and conditionals."""
from __future__ import annotations

import random

from sut.tasks.families import Draft, family, families_in, function_task, pick, value_task, words

# (operator, prompt paraphrases, plain-Python meaning)
_BINOPS = (
    ("+", ("Return {a} plus {b}.", "Compute the sum of {a} and {b}."), lambda a, b: a + b),
    ("-", ("Return {a} minus {b}.", "Subtract {b} from {a}."), lambda a, b: a - b),
    ("*", ("Return {a} times {b}.", "Compute the product of {a} and {b}."), lambda a, b: a * b),
    ("//", ("Return {a} divided by {b}, rounded down.", "Compute the integer quotient of {a} by {b}."),
     lambda a, b: a // b),
    ("%", ("Return the remainder of {a} divided by {b}.", "Compute {a} modulo {b}."), lambda a, b: a % b),
)


@family("arith_binop", "arithmetic", 1)
def arith_binop(rng: random.Random, level: int) -> Draft:
    op, phrases, f = pick(rng, _BINOPS)
    a, b = rng.randint(2, 99), rng.randint(2, 12)
    return value_task(pick(rng, phrases).format(a=a, b=b), f"result = {a} {op} {b}", f(a, b))


@family("arith_power", "arithmetic", 1)
def arith_power(rng: random.Random, level: int) -> Draft:
    b = rng.choice((2, 2, 3, 4))
    a = rng.randint(2, {2: 99, 3: 30, 4: 9}[b])
    prompt = pick(rng, ("Return {a} to the power of {b}.", "Compute {a} raised to the power {b}.", "Raise {a} to the power {b}."))
    return value_task(prompt.format(a=a, b=b), f"result = {a} ** {b}", a ** b)


@family("arith_minmax", "arithmetic", 1)
def arith_minmax(rng: random.Random, level: int) -> Draft:
    a, b = rng.sample(range(-30, 100), 2)
    t = rng.randrange(3)
    if t == 0:
        prompt = pick(rng, ("Return the larger of {a} and {b}.", "Return the bigger number of {a} and {b}."))
        return value_task(prompt.format(a=a, b=b), f"result = max({a}, {b})", max(a, b))
    if t == 1:
        prompt = pick(rng, ("Return the smaller of {a} and {b}.", "Return the lesser number of {a} and {b}."))
        return value_task(prompt.format(a=a, b=b), f"result = min({a}, {b})", min(a, b))
    a = -abs(a) if rng.random() < 0.7 else a
    prompt = pick(rng, ("Return the absolute value of {a}.", "Compute the absolute value of {a}."))
    return value_task(prompt.format(a=a), f"result = abs({a})", abs(a))


@family("arith_expr", "arithmetic", 2, 3)
def arith_expr(rng: random.Random, level: int) -> Draft:
    a, b, c, d = (rng.randint(2, 20) for _ in range(4))
    if level == 2:
        t = rng.randrange(3)
        if t == 0:
            p = pick(rng, ("Return the sum of {a} and {b}, multiplied by {c}.", "Add {a} and {b}, then multiply by {c}."))
            return value_task(p.format(a=a, b=b, c=c), f"result = ({a} + {b}) * {c}", (a + b) * c)
        if t == 1:
            p = pick(rng, ("Return {a} times {b}, plus {c}.", "Multiply {a} by {b}, then add {c}."))
            return value_task(p.format(a=a, b=b, c=c), f"result = {a} * {b} + {c}", a * b + c)
        p = pick(rng, ("Return {a} minus {b}, times {c}.", "Subtract {b} from {a}, then multiply by {c}."))
        return value_task(p.format(a=a, b=b, c=c), f"result = ({a} - {b}) * {c}", (a - b) * c)
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the sum of {a} and {b}, times {c}, minus {d}.",
                       "Add {a} and {b}, multiply by {c}, then subtract {d}."))
        return value_task(p.format(a=a, b=b, c=c, d=d), f"result = ({a} + {b}) * {c} - {d}", (a + b) * c - d)
    if t == 1:
        p = pick(rng, ("Return {a} times {b}, plus {c} times {d}.", "Add the product of {a} and {b} to the product of {c} and {d}."))
        return value_task(p.format(a=a, b=b, c=c, d=d), f"result = {a} * {b} + {c} * {d}", a * b + c * d)
    p = pick(rng, ("Return the sum of {a}, {b} and {c}, divided by {d}, rounded down.",
                   "Add {a}, {b} and {c}, then divide by {d}, rounding down."))
    return value_task(p.format(a=a, b=b, c=c, d=d), f"result = ({a} + {b} + {c}) // {d}", (a + b + c) // d)


@family("num_digits", "arithmetic", 2, 3)
def num_digits(rng: random.Random, level: int) -> Draft:
    if level == 2:
        n = rng.randint(1, 10 ** rng.randint(1, 7))
        p = pick(rng, ("Return the number of digits in {n}.", "Count the digits of {n}."))
        return value_task(p.format(n=n), f"result = len(str({n}))", len(str(n)))
    n = rng.randint(10, 99999)
    while n % 10 == 0:
        n = rng.randint(10, 99999)
    p = pick(rng, ("Return {n} with its digits reversed.", "Return the number formed by reversing the digits of {n}."))
    return value_task(p.format(n=n), f"result = int(str({n})[::-1])", int(str(n)[::-1]))


@family("linear_fn", "arithmetic", 1, 2)
def linear_fn(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("shift", "scale", "adjust", "convert")), pick(rng, ("x", "n"))
    k, m = rng.randint(2, 20), rng.randint(2, 20)
    inputs = [(rng.randint(-10, 30),) for _ in range(4)]
    if level == 1:
        t = rng.randrange(3)
        if t == 0:
            return function_task(rng, name, [p], f"{p} plus {k}", f"return {p} + {k}", lambda x: x + k, inputs)
        if t == 1:
            return function_task(rng, name, [p], f"{p} minus {k}", f"return {p} - {k}", lambda x: x - k, inputs)
        return function_task(rng, name, [p], f"{p} times {k}", f"return {p} * {k}", lambda x: x * k, inputs)
    if rng.random() < 0.5:
        return function_task(rng, name, [p], f"{p} times {k}, plus {m}", f"return {p} * {k} + {m}",
                             lambda x: x * k + m, inputs)
    return function_task(rng, name, [p], f"{p} plus {k}, times {m}", f"return ({p} + {k}) * {m}",
                         lambda x: (x + k) * m, inputs)


# ---- conditionals -----------------------------------------------------------------------

_CMP = (("greater than", ">", lambda a, b: a > b), ("less than", "<", lambda a, b: a < b),
        ("at least", ">=", lambda a, b: a >= b))


@family("cond_value", "conditionals", 2)
def cond_value(rng: random.Random, level: int) -> Draft:
    w1, w2 = words(rng, 2)
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    if rng.random() < 0.15:
        b = a
    text, op, f = pick(rng, _CMP)
    p = pick(rng, ("Return {w1!r} if {a} is {text} {b}, otherwise {w2!r}.", "Return {w1!r} if {a} is {text} {b}, else {w2!r}."))
    return value_task(p.format(w1=w1, w2=w2, a=a, b=b, text=text),
                      f"result = {w1!r} if {a} {op} {b} else {w2!r}", w1 if f(a, b) else w2)


@family("is_multiple", "conditionals", 2)
def is_multiple(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("is_multiple", "divisible", "check")), pick(rng, ("n", "x"))
    k = rng.randint(2, 12)
    xs = [k * rng.randint(0, 9), k * rng.randint(1, 9) + rng.randint(1, k - 1), rng.randint(1, 99), k * rng.randint(2, 5)]
    what = pick(rng, (f"True if {p} is divisible by {k}, else False", f"whether {p} is a multiple of {k}"))
    return function_task(rng, name, [p], what, f"return {p} % {k} == 0", lambda x: x % k == 0, [(x,) for x in xs])


@family("clamp", "conditionals", 2)
def clamp(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("clamp", "limit", "bound")), pick(rng, ("x", "n", "value"))
    lo = rng.randint(-10, 20)
    hi = lo + rng.randint(3, 30)
    xs = [lo - rng.randint(1, 10), rng.randint(lo, hi), hi + rng.randint(1, 10), rng.choice((lo, hi))]
    what = pick(rng, (f"{p} limited to the range {lo} to {hi}", f"{p} clamped between {lo} and {hi}"))
    return function_task(rng, name, [p], what, f"return max({lo}, min({p}, {hi}))",
                         lambda x: max(lo, min(x, hi)), [(x,) for x in xs])


@family("cond_label", "conditionals", 2)
def cond_label(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("label", "classify", "tag")), pick(rng, ("n", "x"))
    w1, w2 = words(rng, 2)
    t = rng.randrange(3)
    if t == 0:
        cond, text, f = f"{p} % 2 == 0", f"{p} is even", (lambda x: x % 2 == 0)
        xs = [2 * rng.randint(-5, 20), 2 * rng.randint(-5, 20) + 1, rng.randint(-9, 40), 0]
    elif t == 1:
        cond, text, f = f"{p} < 0", f"{p} is negative", (lambda x: x < 0)
        xs = [-rng.randint(1, 30), rng.randint(1, 30), 0, rng.randint(-30, 30)]
    else:
        k = rng.randint(-5, 30)
        cond, text, f = f"{p} > {k}", f"{p} is greater than {k}", (lambda x: x > k)
        xs = [k, k + 1, k - rng.randint(1, 9), rng.randint(-9, 40)]
    return function_task(rng, name, [p], f"{w1!r} if {text}, else {w2!r}", f"return {w1!r} if {cond} else {w2!r}",
                         lambda x: w1 if f(x) else w2, [(x,) for x in xs])


@family("grade", "conditionals", 3)
def grade(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("grade", "rank", "rate")), pick(rng, ("n", "score"))
    w1, w2, w3 = words(rng, 3)
    b = rng.randint(10, 60)
    a = b + rng.randint(5, 30)
    xs = [a + rng.randint(0, 9), a - 1, b, b - 1, rng.randint(b, a - 1)]
    rng.shuffle(xs)
    body = f"return {w1!r} if {p} >= {a} else {w2!r} if {p} >= {b} else {w3!r}"
    return function_task(rng, name, [p], f"{w1!r} if {p} is at least {a}, {w2!r} if it is at least {b}, else {w3!r}",
                         body, lambda x: w1 if x >= a else w2 if x >= b else w3, [(x,) for x in xs])


FAMILIES = families_in(globals())
