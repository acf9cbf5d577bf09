"""Wrong-but-plausible variants of a task's solution, for training retry transcripts.

The trainer shows the model (task, wrong attempt, the real verifier's feedback on it,
correct attempt), so the model learns to read feedback. The wrong attempts come from
here: small edits of the canonical solution in the error classes a beginner (or a tiny
model) makes. Each edit is a token-level rewrite found with ``tokenize``; nothing is
executed. A mistake always differs from the solution text; it can (rarely) still be
correct, so the trainer must keep only those the verifier rejects.
"""
from __future__ import annotations

import builtins
import io
import keyword
import random
import tokenize
from typing import NamedTuple

from sut.tasks.families import WORDS
from sut.tasks.record import Task

Edit = tuple[int, int, str]  # replace src[start:end] with text

_OP_SWAP = {"+": ("-",), "-": ("+",), "*": ("+",), "**": ("*",), "//": ("%",), "%": ("//",),
            "<": (">",), ">": ("<",), "<=": (">=",), ">=": ("<=",), "==": ("!=",), "!=": ("==",)}
_NAME_SWAP = {"max": ("min",), "min": ("max",), "sum": ("len", "max"), "len": ("sum",), "upper": ("lower",),
              "lower": ("upper",), "capitalize": ("upper",), "title": ("upper", "lower"), "startswith": ("endswith",),
              "endswith": ("startswith",), "count": ("index",), "index": ("count",), "values": ("keys",),
              "True": ("False",)}
_COMMUTATIVE_CALLS = {"max", "min"}
_BUILTINS = set(dir(builtins))


class Mistake(NamedTuple):
    kind: str   # one of KINDS
    code: str


def _tokens(src: str) -> list[tokenize.TokenInfo]:
    skip = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.COMMENT}
    return [t for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type not in skip]


class _Src:
    """The solution text with its tokens and their absolute character offsets."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokens(src)
        starts = [0]
        for line in src.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        self.span = [(starts[t.start[0] - 1] + t.start[1], starts[t.end[0] - 1] + t.end[1]) for t in self.toks]

    def s(self, i: int) -> str:
        return self.toks[i].string if 0 <= i < len(self.toks) else ""

    def close(self, i: int) -> int:
        """Index of the bracket closing the one at token ``i``."""
        depth = 0
        for j in range(i, len(self.toks)):
            if self.s(j) in ("(", "[", "{") and self.toks[j].type == tokenize.OP:
                depth += 1
            elif self.s(j) in (")", "]", "}") and self.toks[j].type == tokenize.OP:
                depth -= 1
                if depth == 0:
                    return j
        return len(self.toks) - 1

    def top_level(self, i: int, j: int, text: str) -> list[int]:
        """Indices of ``text`` tokens at depth 0 strictly between brackets i and j."""
        depth, out = 0, []
        for k in range(i + 1, j):
            if self.s(k) in ("(", "[", "{"):
                depth += 1
            elif self.s(k) in (")", "]", "}"):
                depth -= 1
            elif depth == 0 and self.s(k) == text:
                out.append(k)
        return out


def _unary(c: _Src, i: int) -> bool:
    """Is the operator at token ``i`` a unary sign (as in ``[-2:]``)?"""
    prev = c.toks[i - 1] if i else None
    return c.s(i) in ("-", "+") and (prev is None or (prev.type == tokenize.OP and prev.string not in (")", "]", "}"))
                                     or keyword.iskeyword(prev.string))


def _is_subscript(c: _Src, i: int) -> bool:
    """Is the ``[`` at token ``i`` a subscript (``xs[1]``) rather than a list display?"""
    prev = c.toks[i - 1] if i else None
    return prev is not None and (prev.string in (")", "]", "}") or prev.type == tokenize.STRING or (
        prev.type == tokenize.NAME and not keyword.iskeyword(prev.string)))


def _in_display(c: _Src) -> list[bool]:
    """Per token: is it data inside a list/dict/set literal (rather than part of an operation)?"""
    out: list[bool] = []
    stack: list[bool] = []
    for i, t in enumerate(c.toks):
        if t.type == tokenize.OP and t.string in ("(", "[", "{"):
            if t.string == "(" or (t.string == "[" and _is_subscript(c, i)):
                stack.append(bool(stack) and stack[-1])  # a call, group or subscript inherits
            else:  # a literal is data; a comprehension is code
                stack.append(not c.top_level(i, c.close(i), "for"))
        elif t.type == tokenize.OP and t.string in (")", "]", "}") and stack:
            stack.pop()
        out.append(bool(stack) and stack[-1])
    return out


def _operator(c: _Src, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    pending_for = False
    for i, t in enumerate(c.toks):
        a, b = c.span[i]
        if t.type == tokenize.OP and t.string in _OP_SWAP and not _unary(c, i):
            edits += [(a, b, alt) for alt in _OP_SWAP[t.string]]
        elif t.type == tokenize.NAME and t.string in _NAME_SWAP and c.s(i + 1) in ("(", ")", ","):
            edits += [(a, b, alt) for alt in _NAME_SWAP[t.string]]
        if t.string == "for":
            pending_for = True
        elif t.string == "in" and pending_for:
            pending_for = False
        elif t.string == "in":
            edits.append((a, a, "not "))  # `x in s` -> `x not in s`
        if t.string == "sorted" and c.s(i + 1) == "(":
            j = c.close(i + 1)
            rev = c.top_level(i + 1, j, "reverse")
            if rev:
                edits.append((c.span[rev[0] - 1][0], c.span[rev[0] + 2][1], ""))  # drop `, reverse=True`
            else:
                edits.append((c.span[j][0], c.span[j][0], ", reverse=True"))
    return edits


def _off_by_one(c: _Src, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    data = _in_display(c)
    for i, t in enumerate(c.toks):
        if t.type == tokenize.NUMBER and t.string.isdigit() and not data[i]:
            n = int(t.string)
            edits += [(*c.span[i], str(n + d)) for d in (1, -1) if n + d >= 0]
        if t.string == "+" and c.s(i + 1) == "1" and c.s(i + 2) == ")":  # range(a, b + 1) -> range(a, b)
            edits.append((c.span[i - 1][1], c.span[i + 1][1], ""))
    return edits


def _typo(name: str, taken: set[str], rng: random.Random) -> str | None:
    if len(name) == 1:
        options = [ch for ch in "abcdefghijklmnopqrstuvwxyz" if ch != name]
    else:
        k = rng.randrange(1, len(name))
        options = [name[:-1], name[:k] + name[k + 1:], name[:k] + name[k] + name[k:], name + "s",
                   name[:k - 1] + name[k] + name[k - 1] + name[k + 1:], name.capitalize()]
    options = [o for o in options if o and o != name and o.isidentifier() and o not in taken
               and o not in _BUILTINS and not keyword.iskeyword(o)]
    return rng.choice(options) if options else None


def _name_typo(c: _Src, rng: random.Random) -> list[Edit]:
    occ: dict[str, list[int]] = {}
    depth = 0
    for i, t in enumerate(c.toks):
        if t.string in ("(", "[", "{"):
            depth += 1
        elif t.string in (")", "]", "}"):
            depth -= 1
        if (t.type != tokenize.NAME or keyword.iskeyword(t.string) or t.string in _BUILTINS or t.string == "_"
                or c.s(i - 1) in (".", "def") or (depth > 0 and c.s(i + 1) == "=")):
            continue
        occ.setdefault(t.string, []).append(i)
    taken = {t.string for t in c.toks if t.type == tokenize.NAME}
    edits: list[Edit] = []
    for name, idx in occ.items():
        for i in (idx[1:] or idx):  # prefer uses over the binding occurrence
            new = _typo(name, taken, rng)
            if new:
                edits.append((*c.span[i], new))
    return edits


def _slice(c: _Src, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    for i, t in enumerate(c.toks):
        if t.string != "[" or not _is_subscript(c, i):
            continue  # a list display, not a subscript
        j = c.close(i)
        if not c.top_level(i, j, ":"):
            continue
        a, b = c.span[i][1], c.span[j][0]
        inner = c.src[a:b]
        if inner == "::-1":
            new = ":-1"
        elif inner.startswith(":"):
            new = inner[1:] + ":"
        elif inner.endswith(":"):
            new = ":" + inner[:-1]
        else:
            continue
        edits.append((a, b, new))
    return edits


def _no_return(c: _Src, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    pos = 0
    lines = c.src.splitlines(keepends=True)
    first = lines[0] if lines else ""
    params = first[first.find("(") + 1:first.find(")")].split(", ") if first.startswith("def ") else []
    for line in lines:
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        expr = body.rstrip("\n")
        if body.startswith("return "):
            edits.append((pos + indent, pos + indent + len("return "), ""))  # returns None
            edits += [(pos + indent, pos + indent + len(expr), f"return {p}") for p in params if p]
        elif indent == 0 and body.startswith("result = "):
            rhs = expr[len("result = "):]
            edits += [(pos, pos + len(expr), f"return {rhs}"), (pos, pos + len(expr), f"print({rhs})")]
        pos += len(line)
    return edits


def _syntax(c: _Src, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    for i, t in enumerate(c.toks):
        a, b = c.span[i]
        if t.string == ":" and c.toks[i].end[0] != (c.toks[i + 1].start[0] if i + 1 < len(c.toks) else -1):
            edits.append((a, b, ""))  # missing colon at the end of a def/for/if/while line
        elif t.string in (")", "]", "}"):
            edits.append((a, b, ""))  # missing closing bracket
        elif t.type == tokenize.STRING and len(t.string) >= 2:
            edits.append((b - 1, b, ""))  # unterminated string
    return edits


def _swap_args(c: _Src, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    atoms = (tokenize.NAME, tokenize.NUMBER, tokenize.STRING)
    for i, t in enumerate(c.toks):
        if t.type == tokenize.NAME and c.s(i + 1) == "(" and c.s(i - 1) != "def" and t.string not in _COMMUTATIVE_CALLS:
            j = c.close(i + 1)
            commas = c.top_level(i + 1, j, ",")
            if len(commas) == 1 and not c.top_level(i + 1, j, "=") and not c.top_level(i + 1, j, "for"):
                k = commas[0]
                left = c.src[c.span[i + 1][1]:c.span[k][0]].strip()
                right = c.src[c.span[k][1]:c.span[j][0]].strip()
                if left != right:
                    edits.append((c.span[i + 1][1], c.span[j][0], f"{right}, {left}"))
        elif (t.string in ("-", "//", "%", "**") and 0 < i < len(c.toks) - 1 and c.toks[i - 1].type in atoms
              and c.toks[i + 1].type in atoms and c.s(i - 2) not in (".", "*", "/", "//", "%", "**", "-")
              and c.s(i + 2) not in ("(", "[", ".", "**") and c.s(i - 1) != c.s(i + 1)):
            edits.append((c.span[i - 1][0], c.span[i + 1][1], f"{c.s(i + 1)} {t.string} {c.s(i - 1)}"))
    return edits


def _digit_edits(a: int, b: int, digits: str, rng: random.Random) -> list[Edit]:
    """Mis-copied number: a digit dropped, two neighbours transposed, one digit changed."""
    out: list[Edit] = []
    if len(digits) > 1:
        k = rng.randrange(len(digits))
        out.append((a, b, digits[:k] + digits[k + 1:]))
        k = rng.randrange(len(digits) - 1)
        if digits[k] != digits[k + 1]:
            out.append((a, b, digits[:k] + digits[k + 1] + digits[k] + digits[k + 2:]))
    k = rng.randrange(len(digits))
    out.append((a, b, digits[:k] + rng.choice([x for x in "0123456789" if x != digits[k]]) + digits[k + 1:]))
    return [e for e in out if e[2] and (len(e[2]) == 1 or e[2][0] != "0")]  # no `02`: a syntax error


def _string_edits(a: int, b: int, lit: str, others: list[str], rng: random.Random) -> list[Edit]:
    """Mis-copied string literal: another string of the task, a word of a phrase dropped,
    swapped or replaced, or one character dropped or changed."""
    q = lit[:1]
    if q not in ("'", '"') or len(lit) < 2 or lit[-1] != q or lit.startswith(q * 3) or "\\" in lit:
        return []
    body = lit[1:-1]
    out: list[Edit] = []
    cands = [o for o in others if o != body]
    if cands:
        out.append((a, b, q + rng.choice(cands) + q))
    words = body.split(" ")
    if len(words) > 1:
        k = rng.randrange(len(words))
        out.append((a, b, q + " ".join(words[:k] + words[k + 1:]) + q))
        i, j = rng.sample(range(len(words)), 2)
        if words[i] != words[j]:
            w = list(words)
            w[i], w[j] = w[j], w[i]
            out.append((a, b, q + " ".join(w) + q))
        w = list(words)
        w[k] = rng.choice([x for x in WORDS if x != words[k]])
        out.append((a, b, q + " ".join(w) + q))
    elif len(body) > 1:
        k = rng.randrange(len(body))
        out.append((a, b, q + body[:k] + body[k + 1:] + q))
        ch = rng.choice([x for x in "abcdefghijklmnopqrstuvwxyz" if x != body[k]])
        out.append((a, b, q + body[:k] + ch + body[k + 1:] + q))
    elif body.isalpha():
        out.append((a, b, q + rng.choice([x for x in "abcdefghijklmnopqrstuvwxyz" if x != body]) + q))
    return out


def _element_edits(c: _Src, rng: random.Random) -> list[Edit]:
    """Mis-copied list/dict display: two elements swapped, one copied over another, one dropped."""
    out: list[Edit] = []
    for i, t in enumerate(c.toks):
        if t.type != tokenize.OP or t.string not in ("[", "{") or (t.string == "[" and _is_subscript(c, i)):
            continue
        j = c.close(i)
        commas = c.top_level(i, j, ",")
        if not commas or c.top_level(i, j, "for"):
            continue
        bounds = [i, *commas, j]
        texts = [c.src[c.span[bounds[k]][1]:c.span[bounds[k + 1]][0]].strip() for k in range(len(bounds) - 1)]
        if any(not x for x in texts):
            continue
        a, b = c.span[i][1], c.span[j][0]
        p, r = rng.sample(range(len(texts)), 2)
        if texts[p] != texts[r]:
            w = list(texts)
            w[p], w[r] = w[r], w[p]
            out.append((a, b, ", ".join(w)))
            w = list(texts)
            w[r] = texts[p]
            out.append((a, b, ", ".join(w)))
        k = rng.randrange(len(texts))
        out.append((a, b, ", ".join(texts[:k] + texts[k + 1:])))
    return out


def _literal(c: _Src, rng: random.Random) -> list[Edit]:
    """Literals copied wrongly from the prompt (a digit dropped or transposed, a word swapped for
    another, list/dict elements reordered or lost): the first-attempt errors the reference model
    makes most and its retries fix least; the verifier's "expected X, got Y" shows the fix."""
    strings = [t.string[1:-1] for t in c.toks if t.type == tokenize.STRING and len(t.string) >= 2]
    edits: list[Edit] = []
    for i, t in enumerate(c.toks):
        a, b = c.span[i]
        if t.type == tokenize.NUMBER and t.string.isdigit():
            edits += _digit_edits(a, b, t.string, rng)
        elif t.type == tokenize.STRING:
            edits += _string_edits(a, b, t.string, strings, rng)
    return edits + _element_edits(c, rng)


# (kind, rough weight, finder)
KINDS = (("operator", 3.0, _operator), ("off_by_one", 2.0, _off_by_one), ("name_typo", 2.0, _name_typo),
         ("slice", 1.5, _slice), ("no_return", 1.5, _no_return), ("syntax", 1.0, _syntax),
         ("swap_args", 1.0, _swap_args))


# Opt-in kind (``literal_weight`` > 0; trainer flag --literal-mistakes): kept out of KINDS so
# the default recipe draws exactly the mistakes it always drew.
LITERAL_KIND = ("literal", _literal)


def mistake(task: Task, rng: random.Random, literal_weight: float = 0.0) -> Mistake:
    """A wrong variant of ``task.solution`` and its error class; deterministic given ``rng``.
    ``literal_weight`` > 0 adds the "literal" kind (mis-copied prompt literals) with that weight."""
    src = task.solution
    c = _Src(src)
    found = [(kind, w, edits) for kind, w, finder in KINDS if (edits := finder(c, rng))]
    if literal_weight > 0 and (edits := LITERAL_KIND[1](c, rng)):
        found.append((LITERAL_KIND[0], literal_weight, edits))
    for _ in range(8):
        if not found:
            break
        kind, _w, edits = rng.choices(found, weights=[w for _k, w, _e in found])[0]
        a, b, text = rng.choice(edits)
        out = src[:a] + text + src[b:]
        if out != src:
            return Mistake(kind, out)
    return Mistake("syntax", src + ")")


def plausible_mistake(task: Task, rng: random.Random, literal_weight: float = 0.0) -> str:
    """A wrong-but-plausible variant of ``task.solution`` (always a different text)."""
    return mistake(task, rng, literal_weight).code
