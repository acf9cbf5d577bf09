"""Task families over lists, and comprehensions."""
from __future__ import annotations

import random

from sut.tasks.families import Draft, families_in, family, function_task, nums, pick, value_task, words


@family("list_agg", "lists", 1)
def list_agg(rng: random.Random, level: int) -> Draft:
    xs = nums(rng)
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the largest number in {xs}.", "Return the maximum of {xs}."))
        return value_task(p.format(xs=xs), f"result = max({xs})", max(xs))
    if t == 1:
        p = pick(rng, ("Return the smallest number in {xs}.", "Return the minimum of {xs}."))
        return value_task(p.format(xs=xs), f"result = min({xs})", min(xs))
    xs = nums(rng, rng.randint(2, 7))
    p = pick(rng, ("Return how many numbers are in {xs}.", "Count the elements of {xs}."))
    return value_task(p.format(xs=xs), f"result = len({xs})", len(xs))


@family("list_sort", "lists", 1)
def list_sort(rng: random.Random, level: int) -> Draft:
    xs = nums(rng)
    if rng.random() < 0.6:
        p = pick(rng, ("Return {xs} sorted in descending order.", "Return {xs} sorted from largest to smallest."))
        return value_task(p.format(xs=xs), f"result = sorted({xs}, reverse=True)", sorted(xs, reverse=True))
    p = pick(rng, ("Return {xs} in reverse order.", "Return the list {xs} reversed."))
    return value_task(p.format(xs=xs), f"result = {xs}[::-1]", xs[::-1])


@family("list_index", "lists", 1)
def list_index(rng: random.Random, level: int) -> Draft:
    xs = nums(rng)
    t = rng.randrange(3)
    if t == 0:
        k = rng.randrange(len(xs))
        p = pick(rng, ("Return the element at index {k} of {xs}.", "Return the item at position {k} of {xs}."))
        return value_task(p.format(k=k, xs=xs), f"result = {xs}[{k}]", xs[k])
    if t == 1:
        p = pick(rng, ("Return the last element of {xs}.", "Return the final item of {xs}."))
        return value_task(p.format(xs=xs), f"result = {xs}[-1]", xs[-1])
    p = pick(rng, ("Return the first element of {xs}.", "Return the first item of {xs}."))
    return value_task(p.format(xs=xs), f"result = {xs}[0]", xs[0])


@family("list_slice", "lists", 1)
def list_slice(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, rng.randint(4, 5))
    k = rng.randint(1, 3)
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the first {k} elements of {xs}.", "Return the first {k} items of {xs}."))
        return value_task(p.format(k=k, xs=xs), f"result = {xs}[:{k}]", xs[:k])
    if t == 1:
        p = pick(rng, ("Return the last {k} elements of {xs}.", "Return the last {k} items of {xs}."))
        return value_task(p.format(k=k, xs=xs), f"result = {xs}[-{k}:]", xs[-k:])
    p = pick(rng, ("Return {xs} without its first {k} elements.", "Drop the first {k} items of {xs}."))
    return value_task(p.format(k=k, xs=xs), f"result = {xs}[{k}:]", xs[k:])


@family("list_count", "lists", 1)
def list_count(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, rng.randint(4, 6), 0, 9)
    if rng.random() < 0.5:
        x = rng.choice(xs) if rng.random() < 0.85 else rng.randint(0, 9)
        p = pick(rng, ("Return how many times {x} appears in {xs}.", "Count the occurrences of {x} in {xs}."))
        return value_task(p.format(x=x, xs=xs), f"result = {xs}.count({x})", xs.count(x))
    x = rng.choice(xs)
    p = pick(rng, ("Return the index of the first {x} in {xs}.", "Return the position of the first {x} in {xs}."))
    return value_task(p.format(x=x, xs=xs), f"result = {xs}.index({x})", xs.index(x))


@family("list_extend", "lists", 1)
def list_extend(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("push", "add_item", "extend")), pick(rng, ("xs", "items", "nums"))
    k = rng.randint(0, 50)
    inputs = [(nums(rng),), ([],), (nums(rng, 1),)]
    if rng.random() < 0.5:
        return function_task(rng, name, [p], f"{p} with {k} added at the end", f"return {p} + [{k}]",
                             lambda xs: xs + [k], inputs)
    return function_task(rng, name, [p], f"{p} with {k} added at the front", f"return [{k}] + {p}",
                         lambda xs: [k] + xs, inputs)


@family("list_second", "lists", 2)
def list_second(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, distinct=True)
    if rng.random() < 0.5:
        p = pick(rng, ("Return the second largest number in {xs}.", "Return the second biggest value in {xs}."))
        return value_task(p.format(xs=xs), f"result = sorted({xs})[-2]", sorted(xs)[-2])
    p = pick(rng, ("Return the second smallest number in {xs}.", "Return the second lowest value in {xs}."))
    return value_task(p.format(xs=xs), f"result = sorted({xs})[1]", sorted(xs)[1])


@family("list_range_sum", "lists", 2)
def list_range_sum(rng: random.Random, level: int) -> Draft:
    a = rng.randint(0, 30)
    b = a + rng.randint(2, 40)
    p = pick(rng, ("Return the sum of the numbers from {a} to {b} inclusive.", "Add up all integers from {a} to {b}, both included."))
    return value_task(p.format(a=a, b=b), f"result = sum(range({a}, {b} + 1))", sum(range(a, b + 1)))


@family("list_stats", "lists", 2)
def list_stats(rng: random.Random, level: int) -> Draft:
    xs = nums(rng)
    if rng.random() < 0.5:
        p = pick(rng, ("Return the average of {xs}, rounded down.", "Compute the mean of {xs}, rounded down."))
        return value_task(p.format(xs=xs), f"xs = {xs}\nresult = sum(xs) // len(xs)", sum(xs) // len(xs))
    p = pick(rng, ("Return the difference between the largest and smallest numbers in {xs}.", "Return the range (max minus min) of {xs}."))
    return value_task(p.format(xs=xs), f"xs = {xs}\nresult = max(xs) - min(xs)", max(xs) - min(xs))


@family("list_unique", "lists", 2)
def list_unique(rng: random.Random, level: int) -> Draft:
    xs = nums(rng, rng.randint(4, 6), 0, 9)
    p = pick(rng, ("Return the distinct numbers of {xs} in sorted order.", "Return the sorted unique values of {xs}."))
    return value_task(p.format(xs=xs), f"result = sorted(set({xs}))", sorted(set(xs)))


# ---- comprehensions ---------------------------------------------------------------------

@family("comp_map", "comprehensions", 1)
def comp_map(rng: random.Random, level: int) -> Draft:
    xs, k = nums(rng), rng.randint(2, 10)
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return each number in {xs} times {k}.", "Return a list of each number in {xs} multiplied by {k}."))
        return value_task(p.format(xs=xs, k=k), f"result = [x * {k} for x in {xs}]", [x * k for x in xs])
    if t == 1:
        p = pick(rng, ("Return each number in {xs} plus {k}.", "Return a list of each number in {xs} increased by {k}."))
        return value_task(p.format(xs=xs, k=k), f"result = [x + {k} for x in {xs}]", [x + k for x in xs])
    p = pick(rng, ("Return the square of each number in {xs}.", "Return a list of the squares of {xs}."))
    return value_task(p.format(xs=xs), f"result = [x ** 2 for x in {xs}]", [x ** 2 for x in xs])


@family("comp_words", "comprehensions", 1, 2)
def comp_words(rng: random.Random, level: int) -> Draft:
    ws = words(rng, rng.randint(3, 4))
    t = rng.randrange(3)
    if level == 1 and t == 0:
        p = pick(rng, ("Return the length of each word in {ws!r}.", "Return a list of the lengths of the words {ws!r}."))
        return value_task(p.format(ws=ws), f"result = [len(w) for w in {ws!r}]", [len(w) for w in ws])
    if level == 1 and t == 1:
        p = pick(rng, ("Return each word in {ws!r} in upper case.", "Return the words {ws!r} in capital letters."))
        return value_task(p.format(ws=ws), f"result = [w.upper() for w in {ws!r}]", [w.upper() for w in ws])
    if level == 1:
        p = pick(rng, ("Return the first letter of each word in {ws!r}.", "Return a list of the first letters of {ws!r}."))
        return value_task(p.format(ws=ws), f"result = [w[0] for w in {ws!r}]", [w[0] for w in ws])
    if t < 2:
        k = rng.randint(3, 5)
        p = pick(rng, ("Return the words in {ws!r} longer than {k} letters.", "Return the words of {ws!r} with more than {k} letters."))
        return value_task(p.format(ws=ws, k=k), f"result = [w for w in {ws!r} if len(w) > {k}]",
                          [w for w in ws if len(w) > k])
    c = rng.choice([w[0] for w in ws] + ["a", "s"])
    p = pick(rng, ("Return the words in {ws!r} that start with {c!r}.", "Return the words of {ws!r} beginning with {c!r}."))
    return value_task(p.format(ws=ws, c=c), f"result = [w for w in {ws!r} if w.startswith({c!r})]",
                      [w for w in ws if w.startswith(c)])


def _mixed(rng: random.Random) -> list[int]:
    """4-5 numbers with both parities, so filters keep some and drop some."""
    while True:
        xs = nums(rng, rng.randint(4, 5))
        if any(x % 2 for x in xs) and any(x % 2 == 0 for x in xs):
            return xs


@family("comp_filter", "comprehensions", 2)
def comp_filter(rng: random.Random, level: int) -> Draft:
    xs = _mixed(rng)
    k = rng.choice(sorted(xs)[1:-1])
    t = rng.randrange(4)
    if t == 0:
        p = pick(rng, ("Return the numbers in {xs} greater than {k}.", "Return the elements of {xs} that are bigger than {k}."))
        return value_task(p.format(xs=xs, k=k), f"result = [x for x in {xs} if x > {k}]", [x for x in xs if x > k])
    if t == 1:
        p = pick(rng, ("Return the numbers in {xs} less than {k}.", "Return the elements of {xs} that are smaller than {k}."))
        return value_task(p.format(xs=xs, k=k), f"result = [x for x in {xs} if x < {k}]", [x for x in xs if x < k])
    if t == 2:
        p = pick(rng, ("Return the even numbers in {xs}.", "Return the elements of {xs} that are even."))
        return value_task(p.format(xs=xs), f"result = [x for x in {xs} if x % 2 == 0]", [x for x in xs if x % 2 == 0])
    p = pick(rng, ("Return the odd numbers in {xs}.", "Return the elements of {xs} that are odd."))
    return value_task(p.format(xs=xs), f"result = [x for x in {xs} if x % 2 == 1]", [x for x in xs if x % 2 == 1])


@family("comp_fn_filter", "comprehensions", 2)
def comp_fn_filter(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("select", "process", "pick")), pick(rng, ("xs", "items", "nums"))
    k = rng.randint(3, 15)
    inputs = [(nums(rng),), (nums(rng),), ([k, k + 1, k - 1],), ([],)]
    t = rng.randrange(3)
    if t == 0:
        return function_task(rng, name, [p], f"the elements of {p} greater than {k}",
                             f"return [x for x in {p} if x > {k}]", lambda xs: [x for x in xs if x > k], inputs)
    if t == 1:
        return function_task(rng, name, [p], f"how many elements of {p} are greater than {k}",
                             f"return len([x for x in {p} if x > {k}])", lambda xs: len([x for x in xs if x > k]), inputs)
    return function_task(rng, name, [p], f"the elements of {p} less than {k}, each doubled",
                         f"return [x * 2 for x in {p} if x < {k}]", lambda xs: [x * 2 for x in xs if x < k], inputs)


@family("dict_comp", "comprehensions", 2)
def dict_comp(rng: random.Random, level: int) -> Draft:
    t = rng.randrange(3)
    if t == 2:
        ws = words(rng, rng.randint(2, 4))
        p = pick(rng, ("Return a dict mapping each word in {ws!r} to its length.", "Map each word of {ws!r} to its length in a dict."))
        return value_task(p.format(ws=ws), f"result = {{w: len(w) for w in {ws!r}}}", {w: len(w) for w in ws})
    xs = nums(rng, rng.randint(3, 4), distinct=True)
    if t == 0:
        p = pick(rng, ("Return a dict mapping each number in {xs} to its square.", "Map each number of {xs} to its square in a dict."))
        return value_task(p.format(xs=xs), f"result = {{x: x ** 2 for x in {xs}}}", {x: x ** 2 for x in xs})
    k = rng.randint(2, 9)
    p = pick(rng, ("Return a dict mapping each number in {xs} to itself times {k}.", "Map each number of {xs} to that number times {k} in a dict."))
    return value_task(p.format(xs=xs, k=k), f"result = {{x: x * {k} for x in {xs}}}", {x: x * k for x in xs})


@family("comp_map_filter", "comprehensions", 3)
def comp_map_filter(rng: random.Random, level: int) -> Draft:
    xs = _mixed(rng)
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the squares of the even numbers in {xs}.", "Square each even number in {xs} and return the list."))
        return value_task(p.format(xs=xs), f"result = [x ** 2 for x in {xs} if x % 2 == 0]", [x ** 2 for x in xs if x % 2 == 0])
    k, m = rng.choice(sorted(xs)[1:-1]), rng.randint(2, 9)
    if t == 1:
        p = pick(rng, ("Return each number in {xs} greater than {k}, times {m}.", "Multiply by {m} each number of {xs} that is greater than {k}."))
        return value_task(p.format(xs=xs, k=k, m=m), f"result = [x * {m} for x in {xs} if x > {k}]", [x * m for x in xs if x > k])
    p = pick(rng, ("Return each odd number in {xs} plus {m}.", "Add {m} to each odd number of {xs} and return the list."))
    return value_task(p.format(xs=xs, m=m), f"result = [x + {m} for x in {xs} if x % 2 == 1]", [x + m for x in xs if x % 2 == 1])


FAMILIES = families_in(globals())
