"""Agentic families over text, word by word: counting letters and words, acronyms, cutting,
hiding and capitalising words, prefixes."""
from __future__ import annotations

import random

from sut.tasks.agentic.family import CASE, LETTERS, TEXT_ARGS, WORD_ARGS, WORDS, Conv, Family, fmt, mixed_case, words_text

ACR_CASE = Conv("case", ("upper", "keep"), "lower-case words")
SEP = Conv("sep", ("", "."), "any word that is kept")
MARKER = Conv("marker", ("counted", "extra"), "a text longer than the limit")
STARS = Conv("stars", ("same_length", "three"), "the hidden word")
TIE = Conv("tie", ("first", "last"), "two candidate words of the same length")
EMPTY_STR = Conv("empty", (None, ""), "a text with no candidate word")
REST = Conv("rest", ("keep", "lower"), "a word with a capital inside")
JOINER = Conv("joiner", ("", "_", "-"), "any word that gets the prefix")
LONG_WORDS = tuple(w for w in WORDS if len(w) != 3)


def _with(rng: random.Random, extra: list[str]) -> str:
    """A text holding each of ``extra`` plus random words, shuffled."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))] + extra
    rng.shuffle(words)
    return " ".join(words)


def _letter_words(c: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for w in WORDS:
        if c in w:
            out.setdefault(len(w), []).append(w)
    return out


def _tie_plan(c: str, direction: str) -> tuple[int, list[int]] | None:
    """For words holding ``c``: a length with two words that would win a tie, and the lengths that lose to it."""
    by_len = _letter_words(c)
    tied = sorted(n for n, ws in by_len.items() if len(ws) >= 2)
    if not tied:
        return None
    n = tied[-1] if direction == "longest" else tied[0]
    losers = [m for m in by_len if (m < n if direction == "longest" else m > n)]
    return (n, losers) if losers else None


class CountLetter(Family):
    name, category, levels = "count_letter", "strings", (1, 2)
    on_empty_levels = (1, 2)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        if level == 1:
            return [{"level": 1, "letter": c} for c in LETTERS]
        return [{"level": 2, "letter": c, "where": w} for c in LETTERS for w in ("start", "end")]

    def own_convs(self, level):
        return (CASE,)

    def fn_names(self, core):
        if core["level"] == 1:
            return ("count_letter", "letter_count", "count_char")
        return ("count_starting", "words_starting", "starts_with") if core["where"] == "start" else (
            "count_ending", "words_ending", "ends_with")

    def whats(self, p):
        c = p["letter"]
        if p["level"] == 1:
            return (f"how many times the letter '{c}' appears in {{a}}", f"the number of '{c}' letters in {{a}}")
        verb = "start" if p["where"] == "start" else "end"
        return (f"how many words in {{a}} {verb} with '{c}'", f"the number of words of {{a}} that {verb} with the letter '{c}'")

    def own_solution(self, p, c):
        a, ch = p["args"][0], p["letter"]
        if p["level"] == 1:
            test = f"c == {ch!r}" if c["case"] == "sensitive" else f"c.lower() == {ch!r}"
            return fmt([f"def {p['fn']}({a}):", "    count = 0", f"    for c in {a}:", f"        if {test}:",
                        "            count += 1", "    return count"])
        method = "startswith" if p["where"] == "start" else "endswith"
        word = "w" if c["case"] == "sensitive" else "w.lower()"
        return fmt([f"def {p['fn']}({a}):", "    count = 0", f"    for w in {a}.split():", f"        if {word}.{method}({ch!r}):",
                    "            count += 1", "    return count"])

    def own_reference(self, p, c, s):
        if c["case"] == "insensitive":
            s = s.lower()
        if p["level"] == 1:
            return s.count(p["letter"])
        return sum(1 for w in s.split() if (w.startswith(p["letter"]) if p["where"] == "start" else w.endswith(p["letter"])))

    def _word(self, p, rng, upper=False):
        w = rng.choice(WORDS)
        ch = p["letter"].upper() if upper else p["letter"]
        if p["level"] == 1:
            i = rng.randrange(len(w))
            return w[:i] + ch + w[i + 1:]
        return ch + w[1:] if p["where"] == "start" else w[:-1] + ch

    def own_edges(self, p, rng):
        other = [w for w in WORDS if p["letter"] not in w]
        return [("",), (_with(rng, [self._word(p, rng), self._word(p, rng, True)]),),
                (" ".join(rng.sample(other, 3)),), (self._word(p, rng, True),)]

    def draw(self, p, rng):
        extra = [self._word(p, rng, rng.random() < 0.3) for _ in range(rng.randint(0, 3))]
        return (_with(rng, extra),)


class Acronym(Family):
    name, category, levels = "acronym", "strings", (2,)
    on_empty_levels = (2,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 2, "skip": w} for w in WORDS]

    def own_convs(self, level):
        return (ACR_CASE, SEP)

    def fn_names(self, core):
        return ("acronym", "initials", "first_letters")

    def whats(self, p):
        return (f"the first letters of the words in {{a}}, skipping the word '{p['skip']}'",
                f"an acronym of {{a}} made from its words other than '{p['skip']}'")

    def own_solution(self, p, c):
        a = p["args"][0]
        letter = "w[0].upper()" if c["case"] == "upper" else "w[0]"
        add = f"{letter} + {c['sep']!r}" if c["sep"] else letter
        return fmt([f"def {p['fn']}({a}):", "    out = ''", f"    for w in {a}.split():", f"        if w != {p['skip']!r}:",
                    f"            out += {add}", "    return out"])

    def own_reference(self, p, c, s):
        out = ""
        for w in s.split():
            if w != p["skip"]:
                out += (w[0].upper() if c["case"] == "upper" else w[0]) + c["sep"]
        return out

    def own_edges(self, p, rng):
        return [("",), (p["skip"],), (_with(rng, [p["skip"]]),), (_with(rng, [p["skip"], p["skip"]]),)]

    def draw(self, p, rng):
        return (words_text(rng, 1, 5),)


class Truncate(Family):
    name, category, levels = "truncate", "strings", (1,)
    on_empty_levels = (1,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 1, "n": n, "mark": m} for n in range(6, 31) for m in ("...", "~", ">>")]

    def own_convs(self, level):
        return (MARKER,)

    def fn_names(self, core):
        return ("shorten", "truncate", "clip")

    def whats(self, p):
        return (f"{{a}} cut to {p['n']} characters, with '{p['mark']}' at the end when it was cut",
                f"{{a}} shortened to {p['n']} characters, marking a cut with '{p['mark']}'")

    def own_solution(self, p, c):
        a, n, m = p["args"][0], p["n"], p["mark"]
        keep = n - len(m) if c["marker"] == "counted" else n
        return fmt([f"def {p['fn']}({a}):", f"    if len({a}) <= {n}:", f"        return {a}", f"    return {a}[:{keep}] + {m!r}"])

    def own_reference(self, p, c, s):
        n, m = p["n"], p["mark"]
        if len(s) <= n:
            return s
        return s[: n - len(m)] + m if c["marker"] == "counted" else s[:n] + m

    def _of_len(self, rng, n):
        return (words_text(rng, 8, 10) + " " + words_text(rng, 8, 10))[:n]

    def own_edges(self, p, rng):
        n = p["n"]
        return [("",), (self._of_len(rng, n),), (self._of_len(rng, n + 1),), (self._of_len(rng, n - 1),),
                (self._of_len(rng, n + 7),)]

    def draw(self, p, rng):
        return (self._of_len(rng, rng.randint(1, 2 * p["n"])),)


class Censor(Family):
    name, category, levels = "censor", "strings", (2,)
    on_empty_levels = (2,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 2, "word": w} for w in LONG_WORDS]

    def own_convs(self, level):
        return (CASE, STARS)

    def fn_names(self, core):
        return ("censor", "hide_word", "mask_word")

    def whats(self, p):
        return (f"{{a}} with every '{p['word']}' replaced by stars", f"{{a}} where the word '{p['word']}' is hidden behind stars")

    def own_solution(self, p, c):
        a = p["args"][0]
        test = f"w == {p['word']!r}" if c["case"] == "sensitive" else f"w.lower() == {p['word']!r}"
        stars = "'*' * len(w)" if c["stars"] == "same_length" else "'***'"
        return fmt([f"def {p['fn']}({a}):", "    out = []", f"    for w in {a}.split():", f"        if {test}:",
                    f"            out.append({stars})", "        else:", "            out.append(w)", "    return ' '.join(out)"])

    def own_reference(self, p, c, s):
        out = []
        for w in s.split():
            hit = (w if c["case"] == "sensitive" else w.lower()) == p["word"]
            out.append(("*" * len(w) if c["stars"] == "same_length" else "***") if hit else w)
        return " ".join(out)

    def own_edges(self, p, rng):
        w = p["word"]
        return [("",), (w,), (_with(rng, [w.capitalize()]),), (_with(rng, [w, w.upper()]),)]

    def draw(self, p, rng):
        return (_with(rng, [p["word"]] * rng.randint(0, 2)),)


class LongestWord(Family):
    name, category, levels = "longest_word", "strings", (2,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 2, "letter": c, "dir": d} for d in ("longest", "shortest") for c in LETTERS if _tie_plan(c, d)]

    def own_convs(self, level):
        return (TIE, EMPTY_STR)

    def fn_names(self, core):
        d = core["dir"]
        return (f"{d}_with", f"{d}_word", f"pick_{d}")

    def whats(self, p):
        return (f"the {p['dir']} word in {{a}} that contains the letter '{p['letter']}'",
                f"the {p['dir']} of the words of {{a}} with a '{p['letter']}' in it")

    def own_solution(self, p, c):
        a = p["args"][0]
        op = (">" if c["tie"] == "first" else ">=") if p["dir"] == "longest" else ("<" if c["tie"] == "first" else "<=")
        tail = ["    return best"] if c["empty"] is None else ["    if best is None:", "        return ''", "    return best"]
        return fmt([f"def {p['fn']}({a}):", "    best = None", f"    for w in {a}.split():", f"        if {p['letter']!r} in w:",
                    f"            if best is None or len(w) {op} len(best):", "                best = w", *tail])

    def own_reference(self, p, c, s):
        words = [w for w in s.split() if p["letter"] in w]
        if not words:
            return c["empty"]
        target = max(map(len, words)) if p["dir"] == "longest" else min(map(len, words))
        same = [w for w in words if len(w) == target]
        return same[0] if c["tie"] == "first" else same[-1]

    def own_edges(self, p, rng):
        by_len = _letter_words(p["letter"])
        n, odd_lens = _tie_plan(p["letter"], p["dir"])
        pair = rng.sample(by_len[n], 2)
        odd = rng.choice([w for m in odd_lens for w in by_len[m]])   # a candidate that loses to the pair
        others = [w for w in WORDS if p["letter"] not in w]
        return [("",), (" ".join(rng.sample(others, 3)),), (" ".join([*pair, odd]),), (" ".join([odd, *pair]),),
                (rng.choice(by_len[n]),)]

    def draw(self, p, rng):
        with_letter = [w for ws in _letter_words(p["letter"]).values() for w in ws]
        return (_with(rng, rng.sample(with_letter, min(len(with_letter), rng.randint(1, 3)))),)


class TitleCase(Family):
    name, category, levels = "title_case", "strings", (1,)
    on_empty_levels = (1,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 1, "skip": w} for w in WORDS]

    def own_convs(self, level):
        return (REST,)

    def fn_names(self, core):
        return ("title", "capitalise", "title_case")

    def whats(self, p):
        return (f"{{a}} with the first letter of every word except '{p['skip']}' in capitals",
                f"{{a}} where each word other than '{p['skip']}' starts with a capital letter")

    def own_solution(self, p, c):
        a = p["args"][0]
        rest = "w[1:]" if c["rest"] == "keep" else "w[1:].lower()"
        return fmt([f"def {p['fn']}({a}):", "    out = []", f"    for w in {a}.split():", f"        if w == {p['skip']!r}:",
                    "            out.append(w)", "        else:", f"            out.append(w[0].upper() + {rest})",
                    "    return ' '.join(out)"])

    def own_reference(self, p, c, s):
        out = []
        for w in s.split():
            out.append(w if w == p["skip"] else w[0].upper() + (w[1:] if c["rest"] == "keep" else w[1:].lower()))
        return " ".join(out)

    def own_edges(self, p, rng):
        return [("",), (p["skip"],), (_with(rng, [p["skip"], "hELlo"]),), (mixed_case(rng, rng.choice(LONG_WORDS), 0.0),)]

    def draw(self, p, rng):
        words = [mixed_case(rng, rng.choice(WORDS), 0.2) for _ in range(rng.randint(1, 4))]
        return (" ".join(words + [p["skip"]] * rng.randint(0, 1)),)


class PrefixWords(Family):
    name, category, levels = "prefix_words", "strings", (1,)
    on_empty_levels = (1,)
    arg_pools = (WORD_ARGS,)

    def space(self, level):
        return [{"level": 1, "prefix": w} for w in WORDS]

    def own_convs(self, level):
        return (JOINER,)

    def fn_names(self, core):
        return ("tag_words", "add_prefix", "prefix_all")

    def whats(self, p):
        return (f"the words of {{a}}, each starting with '{p['prefix']}' (added where missing)",
                f"{{a}} with '{p['prefix']}' put in front of every word that does not already start with it")

    def own_solution(self, p, c):
        a, w = p["args"][0], p["prefix"]
        return fmt([f"def {p['fn']}({a}):", "    out = []", f"    for w in {a}:", f"        if w.startswith({w!r}):",
                    "            out.append(w)", "        else:", f"            out.append({w + c['joiner']!r} + w)", "    return out"])

    def own_reference(self, p, c, words):
        return [w if w.startswith(p["prefix"]) else p["prefix"] + c["joiner"] + w for w in words]

    def own_edges(self, p, rng):
        return [([],), ([rng.choice(WORDS)],), ([p["prefix"] + rng.choice(WORDS), rng.choice(WORDS)],)]

    def draw(self, p, rng):
        return ([(p["prefix"] if rng.random() < 0.3 else "") + rng.choice(WORDS) for _ in range(rng.randint(1, 4))],)


FAMILIES: list[Family] = [CountLetter(), Acronym(), Truncate(), Censor(), LongestWord(), TitleCase(), PrefixWords()]
