"""Task families with loops (state carried across iterations), compositions of two or
three operations, and the reference workload's original eight tasks."""
from __future__ import annotations

import random

from sut.tasks.families import (LETTERS, Draft, families_in, family, function_task, nums, phrase, pick, value_task,
                               word, words)


@family("loop_product", "loops", 3)
def loop_product(rng: random.Random, level: int) -> Draft:
    if rng.random() < 0.5:
        xs = nums(rng, rng.randint(3, 4), 1, 9)
        p = pick(rng, ("Return the product of the numbers in {xs}.", "Multiply together all the numbers in {xs}."))
        prod = 1
        for x in xs:
            prod *= x
        return value_task(p.format(xs=xs), f"result = 1\nfor x in {xs}:\n    result *= x", prod)
    a = rng.randint(1, 9)
    b = a + rng.randint(1, 3)
    p = pick(rng, ("Return the product of the numbers from {a} to {b}.", "Multiply together all integers from {a} to {b}, inclusive."))
    prod = 1
    for i in range(a, b + 1):
        prod *= i
    return value_task(p.format(a=a, b=b), f"result = 1\nfor i in range({a}, {b} + 1):\n    result *= i", prod)


@family("loop_powers_sum", "loops", 3)
def loop_powers_sum(rng: random.Random, level: int) -> Draft:
    e, name = rng.choice(((2, "squares"), (2, "squares"), (3, "cubes")))
    a = rng.randint(1, 20 if e == 2 else 10)
    b = a + rng.randint(2, 10)
    p = pick(rng, ("Return the sum of the {name} of the numbers from {a} to {b}.", "Add up the {name} of the integers {a} to {b}."))
    return value_task(p.format(name=name, a=a, b=b), f"result = 0\nfor i in range({a}, {b} + 1):\n    result += i ** {e}",
                      sum(i ** e for i in range(a, b + 1)))


@family("loop_fib", "loops", 3)
def loop_fib(rng: random.Random, level: int) -> Draft:
    a, b, n = rng.randint(0, 5), rng.randint(1, 5), rng.randint(2, 12)
    p = pick(rng, ("Start with a = {a} and b = {b}; {n} times, set a, b to b, a + b. Return a.",
                   "Return term {n} (counting from 0) of the Fibonacci-like sequence that starts {a}, {b}."))
    x, y = a, b
    for _ in range(n):
        x, y = y, x + y
    return value_task(p.format(a=a, b=b, n=n), f"a, b = {a}, {b}\nfor _ in range({n}):\n    a, b = b, a + b\nresult = a", x)


@family("loop_digits", "loops", 3)
def loop_digits(rng: random.Random, level: int) -> Draft:
    n = rng.randint(10, 99999)
    if rng.random() < 0.6:
        p = pick(rng, ("Return the sum of the digits of {n}.", "Add up the digits of {n}."))
        return value_task(p.format(n=n), f"result = 0\nfor d in str({n}):\n    result += int(d)", sum(int(d) for d in str(n)))
    n = int(str(n).replace("0", str(rng.randint(1, 9))))
    p = pick(rng, ("Return the product of the digits of {n}.", "Multiply together the digits of {n}."))
    prod = 1
    for d in str(n):
        prod *= int(d)
    return value_task(p.format(n=n), f"result = 1\nfor d in str({n}):\n    result *= int(d)", prod)


@family("loop_count", "loops", 3)
def loop_count(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, rng.randint(4, 5))
    k = rng.choice(xs)
    if rng.random() < 0.5:
        p = pick(rng, ("Using a loop, count how many numbers in {xs} are greater than {k}.",
                       "Loop over {xs} and return how many elements are greater than {k}."))
        return value_task(p.format(xs=xs, k=k), f"result = 0\nfor x in {xs}:\n    if x > {k}:\n        result += 1",
                          sum(1 for x in xs if x > k))
    p = pick(rng, ("Using a loop, add up the numbers in {xs} that are less than {k}.",
                   "Loop over {xs} and return the sum of the elements less than {k}."))
    return value_task(p.format(xs=xs, k=k), f"result = 0\nfor x in {xs}:\n    if x < {k}:\n        result += x",
                      sum(x for x in xs if x < k))


@family("loop_while", "loops", 3)
def loop_while(rng: random.Random, level: int) -> Draft:
    if rng.random() < 0.5:
        b, n = rng.randint(2, 5), rng.randint(5, 2000)
        p = pick(rng, ("Return the smallest power of {b} greater than {n}.", "Return the first power of {b} that exceeds {n}."))
        r = 1
        while r <= n:
            r *= b
        return value_task(p.format(b=b, n=n), f"result = 1\nwhile result <= {n}:\n    result *= {b}", r)
    n, k = rng.randint(10, 5000), rng.randint(2, 10)
    p = pick(rng, ("Return how many times {n} can be divided by {k}, rounding down, before it reaches 0.",
                   "Count the integer divisions by {k} it takes to bring {n} down to 0."))
    m, steps = n, 0
    while m > 0:
        m //= k
        steps += 1
    return value_task(p.format(n=n, k=k), f"n, result = {n}, 0\nwhile n > 0:\n    n //= {k}\n    result += 1", steps)


@family("loop_tally", "loops", 3)
def loop_tally(rng: random.Random, level: int) -> Draft:
    if rng.random() < 0.5:
        s = word(rng)
        p = pick(rng, ("Return a dict counting how often each letter occurs in {s!r}.", "Count each letter of {s!r} into a dict."))
    else:
        s = nums(rng, rng.randint(4, 6), 0, 5)
        p = pick(rng, ("Return a dict counting how often each number occurs in {s!r}.", "Count each number of {s!r} into a dict."))
    tally: dict = {}
    for c in s:
        tally[c] = tally.get(c, 0) + 1
    return value_task(p.format(s=s), f"result = {{}}\nfor c in {s!r}:\n    result[c] = result.get(c, 0) + 1", tally)


# ---- compositions -----------------------------------------------------------------------

@family("sum_filter", "compositions", 2)
def sum_filter(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, rng.randint(4, 5))
    if rng.random() < 0.5:
        p = pick(rng, ("Return the sum of the even numbers in {xs}.", "Add up the even elements of {xs}."))
        return value_task(p.format(xs=xs), f"result = sum(x for x in {xs} if x % 2 == 0)", sum(x for x in xs if x % 2 == 0))
    k = rng.choice(xs)
    p = pick(rng, ("Return the sum of the numbers in {xs} greater than {k}.", "Add up the elements of {xs} that exceed {k}."))
    return value_task(p.format(xs=xs, k=k), f"result = sum(x for x in {xs} if x > {k})", sum(x for x in xs if x > k))


@family("str_compose", "compositions", 2)
def str_compose(rng: random.Random, level: int) -> Draft:
    t = rng.randrange(3)
    if t == 0:
        s = word(rng)
        p = pick(rng, ("Return {s!r} reversed and in upper case.", "Reverse {s!r} and convert it to capital letters."))
        return value_task(p.format(s=s), f"result = {s!r}[::-1].upper()", s[::-1].upper())
    if t == 1:
        s = phrase(rng, 3)
        p = pick(rng, ("Return the number of words in {s!r}.", "Count the words in {s!r}."))
        return value_task(p.format(s=s), f"result = len({s!r}.split())", len(s.split()))
    s = phrase(rng, 3)
    p = pick(rng, ("Return the length of {s!r} without its spaces.", "Count the characters of {s!r} that are not spaces."))
    return value_task(p.format(s=s), f"result = len({s!r}.replace(' ', ''))", len(s.replace(" ", "")))


@family("top_k", "compositions", 3)
def top_k(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, rng.randint(4, 5))
    k = rng.randint(2, 3)
    if rng.random() < 0.5:
        p = pick(rng, ("Return the sum of the {k} largest numbers in {xs}.", "Add up the {k} biggest values of {xs}."))
        return value_task(p.format(k=k, xs=xs), f"result = sum(sorted({xs})[-{k}:])", sum(sorted(xs)[-k:]))
    p = pick(rng, ("Return the sum of the {k} smallest numbers in {xs}.", "Add up the {k} lowest values of {xs}."))
    return value_task(p.format(k=k, xs=xs), f"result = sum(sorted({xs})[:{k}])", sum(sorted(xs)[:k]))


@family("words_compose", "compositions", 3)
def words_compose(rng: random.Random, level: int) -> Draft:
    s = " ".join(words(rng, rng.randint(3, 4)))
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the words of {s!r} in reverse order, joined by spaces.", "Reverse the order of the words in {s!r}."))
        return value_task(p.format(s=s), f"result = ' '.join({s!r}.split()[::-1])", " ".join(s.split()[::-1]))
    if t == 1:
        p = pick(rng, ("Return the first letters of the words in {s!r}, joined together.", "Return the initials of {s!r} as one string."))
        return value_task(p.format(s=s), f"result = ''.join(w[0] for w in {s!r}.split())", "".join(w[0] for w in s.split()))
    p = pick(rng, ("Return the length of the longest word in {s!r}.", "Return how many letters the longest word of {s!r} has."))
    return value_task(p.format(s=s), f"result = max(len(w) for w in {s!r}.split())", max(len(w) for w in s.split()))


@family("fn_compose", "compositions", 3)
def fn_compose(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("total", "score", "combine")), pick(rng, ("xs", "items", "nums"))
    k = rng.randint(2, 10)
    inputs = [(nums(rng),), (nums(rng),), ([k - 1, k, k + 1, 2 * k],), ([],)]
    t = rng.randrange(3)
    if t == 0:
        return function_task(rng, name, [p], f"the sum of the squares of the elements of {p} greater than {k}",
                             f"return sum(x ** 2 for x in {p} if x > {k})", lambda xs: sum(x ** 2 for x in xs if x > k), inputs)
    if t == 1:
        return function_task(rng, name, [p], f"the sum of the elements of {p} divisible by {k}, times {k}",
                             f"return sum(x for x in {p} if x % {k} == 0) * {k}",
                             lambda xs: sum(x for x in xs if x % k == 0) * k, inputs)
    return function_task(rng, name, [p], f"the largest element of {p} plus {k}, or {k} if {p} is empty",
                         f"return max({p}, default=0) + {k}", lambda xs: max(xs, default=0) + k, inputs)


# ---- the reference workload's eight tasks -----------------------------------------------

REFERENCE_ORIGINALS: tuple[Draft, ...] = (
    value_task("Return the sum of [1, 2, 3, 4, 5]", "result = sum([1, 2, 3, 4, 5])", 15),
    value_task("Return 'hello' reversed", "result = 'hello'[::-1]", "olleh"),
    value_task("Return the length of 'benchmark'", "result = len('benchmark')", 9),
    value_task("Return 2 ** 10", "result = 2 ** 10", 1024),
    value_task("Return sorted([3, 1, 4, 1, 5])", "result = sorted([3, 1, 4, 1, 5])", [1, 1, 3, 4, 5]),
    value_task("Return max(10, 20, 5)", "result = max(10, 20, 5)", 20),
    value_task("Return 'ab' * 3", "result = 'ab' * 3", "ababab"),
    value_task("Return list(range(5))", "result = list(range(5))", [0, 1, 2, 3, 4]),
)


@family("reference", "reference", 1)
def reference(rng: random.Random, level: int) -> Draft:
    """Parameterised variants of REFERENCE_ORIGINALS, in the originals' own wording."""
    t = rng.randrange(8)
    if t == 0:
        xs = nums(rng, rng.randint(3, 6))
        return value_task(f"Return the sum of {xs}", f"result = sum({xs})", sum(xs))
    if t == 1:
        s = word(rng)
        return value_task(f"Return {s!r} reversed", f"result = {s!r}[::-1]", s[::-1])
    if t == 2:
        s = phrase(rng)
        return value_task(f"Return the length of {s!r}", f"result = len({s!r})", len(s))
    if t == 3:
        b = rng.randint(2, 10)
        a = rng.randint(2, {2: 99, 3: 30, 4: 12}.get(b, 3))
        return value_task(f"Return {a} ** {b}", f"result = {a} ** {b}", a ** b)
    if t == 4:
        xs = nums(rng, rng.randint(3, 6))
        return value_task(f"Return sorted({xs})", f"result = sorted({xs})", sorted(xs))
    if t == 5:
        xs = nums(rng, rng.randint(2, 4), 0, 99)
        args = ", ".join(map(str, xs))
        return value_task(f"Return max({args})", f"result = max({args})", max(xs))
    if t == 6:
        s, k = "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 3))), rng.randint(2, 5)
        return value_task(f"Return {s!r} * {k}", f"result = {s!r} * {k}", s * k)
    if rng.random() < 0.5:
        n = rng.randint(1, 12)
        return value_task(f"Return list(range({n}))", f"result = list(range({n}))", list(range(n)))
    a = rng.randint(0, 10)
    b = a + rng.randint(1, 8)
    return value_task(f"Return list(range({a}, {b}))", f"result = list(range({a}, {b}))", list(range(a, b)))


FAMILIES = families_in(globals())
