"""Task families over strings and dicts."""
from __future__ import annotations

import random

from sut.tasks.families import (LETTERS, VOWELS, Draft, families_in, family, function_task, letter_of, nums, phrase,
                               pick, value_task, word, words)


@family("str_case", "strings", 1)
def str_case(rng: random.Random, level: int) -> Draft:
    s = phrase(rng)
    t = rng.randrange(4)
    if t == 0:
        p = pick(rng, ("Return {s!r} in upper case.", "Return {s!r} in capital letters."))
        return value_task(p.format(s=s), f"result = {s!r}.upper()", s.upper())
    if t == 1:
        s = s.upper()
        p = pick(rng, ("Return {s!r} in lower case.", "Return {s!r} in small letters."))
        return value_task(p.format(s=s), f"result = {s!r}.lower()", s.lower())
    if t == 2:
        p = pick(rng, ("Return {s!r} with its first letter capitalized.", "Capitalize the first letter of {s!r}."))
        return value_task(p.format(s=s), f"result = {s!r}.capitalize()", s.capitalize())
    s = phrase(rng, 3)
    p = pick(rng, ("Return {s!r} in title case.", "Return {s!r} with every word capitalized."))
    return value_task(p.format(s=s), f"result = {s!r}.title()", s.title())


@family("str_count", "strings", 1)
def str_count(rng: random.Random, level: int) -> Draft:
    s = phrase(rng)
    c = letter_of(rng, s)
    p = pick(rng, ("Return how many times {c!r} appears in {s!r}.", "Count the occurrences of {c!r} in {s!r}."))
    return value_task(p.format(c=c, s=s), f"result = {s!r}.count({c!r})", s.count(c))


@family("str_replace", "strings", 1)
def str_replace(rng: random.Random, level: int) -> Draft:
    s = phrase(rng)
    a = letter_of(rng, s, 0.95)
    b = rng.choice([x for x in LETTERS + "-_*" if x != a])
    p = pick(rng, ("Return {s!r} with every {a!r} replaced by {b!r}.", "Replace each {a!r} in {s!r} with {b!r}."))
    return value_task(p.format(s=s, a=a, b=b), f"result = {s!r}.replace({a!r}, {b!r})", s.replace(a, b))


@family("str_slice", "strings", 1)
def str_slice(rng: random.Random, level: int) -> Draft:
    s = word(rng)
    k = rng.randint(1, min(4, len(s) - 1))
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the first {k} letters of {s!r}.", "Return the first {k} characters of {s!r}."))
        return value_task(p.format(k=k, s=s), f"result = {s!r}[:{k}]", s[:k])
    if t == 1:
        p = pick(rng, ("Return the last {k} letters of {s!r}.", "Return the last {k} characters of {s!r}."))
        return value_task(p.format(k=k, s=s), f"result = {s!r}[-{k}:]", s[-k:])
    p = pick(rng, ("Return {s!r} without its first {k} letters.", "Drop the first {k} characters of {s!r}."))
    return value_task(p.format(k=k, s=s), f"result = {s!r}[{k}:]", s[k:])


@family("str_join", "strings", 1)
def str_join(rng: random.Random, level: int) -> Draft:
    ws = words(rng, rng.randint(2, 4))
    sep = rng.choice(("-", "_", " ", ", ", "+", "/", ":"))
    p = pick(rng, ("Return the words {ws!r} joined with {sep!r}.", "Join the words {ws!r} using {sep!r} between them."))
    return value_task(p.format(ws=ws, sep=sep), f"result = {sep!r}.join({ws!r})", sep.join(ws))


@family("str_affix", "strings", 1)
def str_affix(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("check", "matches", "has_part")), pick(rng, ("s", "word", "text"))
    x = "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 3)))
    ws = words(rng, 3)
    inputs = [(x + ws[0],), (ws[1] + x,), (ws[2],), (ws[0] + x + ws[1],)]
    t = rng.randrange(3)
    if t == 0:
        return function_task(rng, name, [p], f"True if {p} starts with {x!r}", f"return {p}.startswith({x!r})",
                             lambda s: s.startswith(x), inputs)
    if t == 1:
        return function_task(rng, name, [p], f"True if {p} ends with {x!r}", f"return {p}.endswith({x!r})",
                             lambda s: s.endswith(x), inputs)
    return function_task(rng, name, [p], f"True if {x!r} occurs in {p}", f"return {x!r} in {p}",
                         lambda s: x in s, inputs)


@family("str_vowels", "strings", 2)
def str_vowels(rng: random.Random, level: int) -> Draft:
    s = phrase(rng)
    p = pick(rng, ("Return the number of vowels in {s!r}.", "Count the vowels in {s!r}."))
    return value_task(p.format(s=s), f"result = sum(c in {VOWELS!r} for c in {s!r})", sum(c in VOWELS for c in s))


@family("str_palindrome", "strings", 2)
def str_palindrome(rng: random.Random, level: int) -> Draft:
    s = word(rng)
    if rng.random() < 0.5:
        s = s + s[::-1][rng.randint(0, 1):]
    p = pick(rng, ("Return whether {s!r} is a palindrome.", "Return True if {s!r} reads the same backwards, else False."))
    return value_task(p.format(s=s), f"result = {s!r} == {s!r}[::-1]", s == s[::-1])


@family("str_transform", "strings", 2)
def str_transform(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("clean", "transform", "fix")), pick(rng, ("s", "word", "text"))
    ws = words(rng, 4)
    inputs = [(w,) for w in ws]
    t = rng.randrange(3)
    if t == 0:
        a = rng.choice("aeiorstn")
        return function_task(rng, name, [p], f"{p} with every {a!r} removed, in upper case",
                             f"return {p}.replace({a!r}, '').upper()", lambda s: s.replace(a, "").upper(), inputs)
    if t == 1:
        k = rng.randint(1, 3)
        return function_task(rng, name, [p], f"the first {k} letters of {p}, in upper case",
                             f"return {p}[:{k}].upper()", lambda s: s[:k].upper(), inputs)
    w = word(rng)
    return function_task(rng, name, [p], f"{p} reversed, followed by {w!r}", f"return {p}[::-1] + {w!r}",
                         lambda s: s[::-1] + w, inputs)


# ---- dicts ------------------------------------------------------------------------------

def _dict(rng: random.Random, k: int | None = None, distinct: bool = False) -> dict[str, int]:
    k = k if k is not None else rng.randint(2, 4)
    return dict(zip(words(rng, k), nums(rng, k, 0, 20, distinct=distinct)))


@family("dict_get", "dicts", 1)
def dict_get(rng: random.Random, level: int) -> Draft:
    d = _dict(rng)
    k = rng.choice(list(d))
    p = pick(rng, ("Return the value for {k!r} in {d!r}.", "Look up {k!r} in {d!r}."))
    return value_task(p.format(k=k, d=d), f"result = {d!r}[{k!r}]", d[k])


@family("dict_keys", "dicts", 1)
def dict_keys(rng: random.Random, level: int) -> Draft:
    d = _dict(rng)
    if rng.random() < 0.5:
        p = pick(rng, ("Return the keys of {d!r} in sorted order.", "Return the sorted list of keys of {d!r}."))
        return value_task(p.format(d=d), f"result = sorted({d!r})", sorted(d))
    p = pick(rng, ("Return the number of keys in {d!r}.", "Count the entries of {d!r}."))
    return value_task(p.format(d=d), f"result = len({d!r})", len(d))


@family("dict_set", "dicts", 1)
def dict_set(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("set_key", "with_key", "update")), pick(rng, ("d", "data"))
    k, v = word(rng), rng.randint(0, 50)
    inputs = [(_dict(rng),), ({**_dict(rng), k: v + 1},), ({},)]
    return function_task(rng, name, [p], f"a copy of {p} with {k!r} set to {v}", f"return {{**{p}, {k!r}: {v}}}",
                         lambda d: {**d, k: v}, inputs)


@family("dict_get_default", "dicts", 2)
def dict_get_default(rng: random.Random, level: int) -> Draft:
    name, p = pick(rng, ("lookup", "get_or", "fetch")), pick(rng, ("d", "data"))
    k, v = word(rng), rng.randint(-5, 50)
    without_k = {kk: vv for kk, vv in _dict(rng).items() if kk != k}
    inputs = [({**_dict(rng), k: rng.randint(0, 20)},), (without_k,), ({k: v + 3},), ({},)]
    return function_task(rng, name, [p], f"{p}[{k!r}], or {v} if {k!r} is missing", f"return {p}.get({k!r}, {v})",
                         lambda d: d.get(k, v), inputs)


@family("dict_values", "dicts", 2)
def dict_values(rng: random.Random, level: int) -> Draft:
    d = _dict(rng)
    t = rng.randrange(3)
    if t == 0:
        p = pick(rng, ("Return the sum of the values in {d!r}.", "Add up the values of {d!r}."))
        return value_task(p.format(d=d), f"result = sum({d!r}.values())", sum(d.values()))
    if t == 1:
        p = pick(rng, ("Return the largest value in {d!r}.", "Return the maximum value of {d!r}."))
        return value_task(p.format(d=d), f"result = max({d!r}.values())", max(d.values()))
    p = pick(rng, ("Return the smallest value in {d!r}.", "Return the minimum value of {d!r}."))
    return value_task(p.format(d=d), f"result = min({d!r}.values())", min(d.values()))


@family("dict_zip", "dicts", 2)
def dict_zip(rng: random.Random, level: int) -> Draft:
    k = rng.randint(2, 4)
    ks, vs = words(rng, k), nums(rng, k)
    p = pick(rng, ("Return a dict mapping {ks!r} to {vs!r}.", "Build a dict from the keys {ks!r} and the values {vs!r}."))
    return value_task(p.format(ks=ks, vs=vs), f"result = dict(zip({ks!r}, {vs!r}))", dict(zip(ks, vs)))


@family("dict_argmax", "dicts", 2)
def dict_argmax(rng: random.Random, level: int) -> Draft:
    d = _dict(rng, rng.randint(3, 4), distinct=True)
    if rng.random() < 0.5:
        p = pick(rng, ("Return the key with the largest value in {d!r}.", "Return the key of {d!r} whose value is largest."))
        return value_task(p.format(d=d), f"d = {d!r}\nresult = max(d, key=d.get)", max(d, key=d.get))
    p = pick(rng, ("Return the key with the smallest value in {d!r}.", "Return the key of {d!r} whose value is smallest."))
    return value_task(p.format(d=d), f"d = {d!r}\nresult = min(d, key=d.get)", min(d, key=d.get))


@family("dict_invert", "dicts", 2)
def dict_invert(rng: random.Random, level: int) -> Draft:
    d = _dict(rng, distinct=True)
    p = pick(rng, ("Return {d!r} with keys and values swapped.", "Invert the dict {d!r}."))
    return value_task(p.format(d=d), f"result = {{v: k for k, v in {d!r}.items()}}", {v: k for k, v in d.items()})


FAMILIES = families_in(globals())
