"""Agentic families over text, character by character: shifting letters, counting vowels,
masking characters."""
from __future__ import annotations

from sut.tasks.agentic.family import CASE, LETTERS, TEXT_ARGS, WORDS, Conv, Family, fmt, mixed_case, words_text

SHIFT_DIR = Conv("direction", ("forward", "back"), "any letter")
OTHER = Conv("other", ("keep", "drop"), "a space or a digit")
KEEP_END = Conv("keep", ("last", "first"), "a text longer than the kept part")
CONSONANTS = [c for c in LETTERS if c not in "aeiou"]


class Caesar(Family):
    name, category, levels = "caesar", "strings", (3,)
    on_empty_levels = (3,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 3, "k": k} for k in range(1, 26) if k != 13]   # 13 places: both directions agree

    def own_convs(self, level):
        return (SHIFT_DIR, OTHER)

    def fn_names(self, core):
        return ("shift", "caesar", "rotate_letters")

    def whats(self, p):
        return (f"{{a}} with each letter moved {p['k']} places along the alphabet, wrapping round",
                f"{{a}} with every letter shifted by {p['k']} in the alphabet, wrapping round")

    def extra(self, p):
        return "Letters are lower case."

    def own_solution(self, p, c):
        a, k = p["args"][0], p["k"]
        sign = "+" if c["direction"] == "forward" else "-"
        other = ["        else:", "            out += c"] if c["other"] == "keep" else []
        return fmt([f"def {p['fn']}({a}):", "    out = ''", f"    for c in {a}:", "        if c.isalpha():",
                    f"            out += chr((ord(c) - 97 {sign} {k}) % 26 + 97)", *other, "    return out"])

    def own_reference(self, p, c, s):
        k = p["k"] if c["direction"] == "forward" else -p["k"]
        return "".join(LETTERS[(LETTERS.index(ch) + k) % 26] if ch in LETTERS else (ch if c["other"] == "keep" else "")
                       for ch in s)

    def own_edges(self, p, rng):
        return [("",), ("xyz abc",), (rng.choice(WORDS) + " 42",), ("zebra",)]

    def draw(self, p, rng):
        return (words_text(rng, 1, 3),)


class Vowels(Family):
    name, category, levels = "vowels", "strings", (1,)
    on_empty_levels = (1,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 1, "extra": c} for c in CONSONANTS]

    def own_convs(self, level):
        return (CASE,)

    def fn_names(self, core):
        return ("count_vowels", "vowel_count", "num_vowels")

    def whats(self, p):
        return (f"how many vowels {{a}} contains, counting '{p['extra']}' as a vowel too",
                f"the number of letters of {{a}} that are vowels or '{p['extra']}'")

    def own_solution(self, p, c):
        a, letters = p["args"][0], "aeiou" + p["extra"]
        test = f"c in {letters!r}" if c["case"] == "sensitive" else f"c.lower() in {letters!r}"
        return fmt([f"def {p['fn']}({a}):", "    count = 0", f"    for c in {a}:", f"        if {test}:", "            count += 1",
                    "    return count"])

    def own_reference(self, p, c, s):
        s = s if c["case"] == "sensitive" else s.lower()
        return sum(1 for ch in s if ch in "aeiou" + p["extra"])

    def own_edges(self, p, rng):
        return [("",), (p["extra"] * 2 + " " + rng.choice(WORDS),), ("Apple " + p["extra"].upper(),), ("xyz",)]

    def draw(self, p, rng):
        return (" ".join(mixed_case(rng, rng.choice(WORDS), 0.2) for _ in range(rng.randint(1, 3))),)


class MaskText(Family):
    name, category, levels = "mask_text", "strings", (2,)
    on_empty_levels = (2,)
    arg_pools = (TEXT_ARGS,)

    def space(self, level):
        return [{"level": 2, "n": n, "mark": m} for n in range(1, 7) for m in "*#x."]

    def own_convs(self, level):
        return (KEEP_END,)

    def fn_names(self, core):
        return ("mask", "hide", "cover")

    def whats(self, p):
        return (f"{{a}} with all but {p['n']} of its characters replaced by '{p['mark']}'",
                f"{{a}} with every character except {p['n']} of them hidden as '{p['mark']}'")

    def own_solution(self, p, c):
        a, n, m = p["args"][0], p["n"], p["mark"]
        if c["keep"] == "last":
            body = [f"        if i < len({a}) - {n}:", f"            out += {m!r}", "        else:", f"            out += {a}[i]"]
        else:
            body = [f"        if i < {n}:", f"            out += {a}[i]", "        else:", f"            out += {m!r}"]
        return fmt([f"def {p['fn']}({a}):", "    out = ''", f"    for i in range(len({a})):", *body, "    return out"])

    def own_reference(self, p, c, s):
        n, m = p["n"], p["mark"]
        hidden = max(0, len(s) - n)
        return m * hidden + s[hidden:] if c["keep"] == "last" else s[:n] + m * hidden

    def own_edges(self, p, rng):
        n = p["n"]
        word = "".join(rng.choice(LETTERS) for _ in range(n + 3))
        return [("",), (word[:n],), (word[: n + 1],), (word,)]

    def draw(self, p, rng):
        return ("".join(rng.choice(LETTERS + "0123456789") for _ in range(rng.randint(1, p["n"] + 8))),)


FAMILIES: list[Family] = [Caesar(), Vowels(), MaskText()]
