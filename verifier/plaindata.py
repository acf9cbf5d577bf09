"""Plain data across the sandbox wall: a hand-checked encoder (child) and a json-only decoder (parent).

Plain data is exactly ``None``, ``bool``, ``int``, ``float``, ``str``, and ``list`` / ``tuple`` /
``dict`` of those. The encoder accepts a value only by exact type (``type(x) is int``), so a
subclass with its own ``__eq__`` or ``__repr__`` is refused instead of being trusted, and it
never calls a method the program could have overridden. The wire form is JSON in which
lists stay arrays, tuples become ``{"t": [...]}`` and dicts ``{"d": [[key, value], ...]}``; the
parent decodes it with ``json.loads`` alone (never pickle, never eval).

This module runs inside the sandbox too (it is shipped into the zygote as source), so it
imports only the standard library and uses no ``from __future__`` import.
"""
import json

MAX_NODES = 100_000        # values in one encoded result
MAX_BYTES = 1_000_000      # size of one encoded result
MAX_DEPTH = 100            # nesting depth


class NotPlain(Exception):
    """The value holds something other than plain data; ``type_name`` names the first offender."""

    def __init__(self, type_name: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name


class TooLarge(Exception):
    """The value is plain data but exceeds the size, node or depth cap."""


def _type_name(t: type) -> str:
    name = type.__dict__["__name__"].__get__(t)  # not t.__name__: a metaclass could fake that
    return name if type(name) is str else "object"


def to_wire(value: object) -> object:
    """Turn plain data into a JSON-ready tree; raise NotPlain or TooLarge."""
    count = [0]

    def walk(x: object, depth: int) -> object:
        count[0] += 1
        if count[0] > MAX_NODES or depth > MAX_DEPTH:
            raise TooLarge()
        t = type(x)
        if x is None or t is bool or t is int or t is float or t is str:
            return x
        if t is list:
            return [walk(v, depth + 1) for v in list.__iter__(x)]
        if t is tuple:
            return {"t": [walk(v, depth + 1) for v in tuple.__iter__(x)]}
        if t is dict:
            return {"d": [[walk(k, depth + 1), walk(v, depth + 1)] for k, v in dict.items(x)]}
        raise NotPlain(_type_name(t))

    return walk(value, 0)


def encode(value: object) -> str:
    """Encode plain data as a JSON string (exact types only, capped in size)."""
    tree = to_wire(value)
    try:
        text = json.dumps(tree, ensure_ascii=False, separators=(",", ":"))
    except ValueError as e:  # an int too long to print (sys.int_info.str_digits_check_threshold)
        raise TooLarge() from e
    if len(text) > MAX_BYTES:
        raise TooLarge()
    return text


def from_wire(tree: object) -> object:
    """Inverse of to_wire; raises ValueError on anything that is not a well-formed encoding."""
    t = type(tree)
    if tree is None or t in (bool, int, float, str):
        return tree
    if t is list:
        return [from_wire(v) for v in tree]
    if t is dict and len(tree) == 1:
        if "t" in tree and type(tree["t"]) is list:
            return tuple(from_wire(v) for v in tree["t"])
        if "d" in tree and type(tree["d"]) is list:
            out = {}
            for pair in tree["d"]:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("bad dict item in plain-data encoding")
                try:
                    out[from_wire(pair[0])] = from_wire(pair[1])
                except TypeError as e:  # unhashable key
                    raise ValueError(f"bad dict key in plain-data encoding: {e}") from e
            return out
    raise ValueError(f"not a plain-data encoding: {type(tree).__name__}")


def decode(text: str) -> object:
    """Decode an ``encode`` string with json only; raises ValueError if malformed."""
    if len(text) > MAX_BYTES:
        raise ValueError("plain-data encoding too large")
    try:
        return from_wire(json.loads(text))
    except RecursionError as e:
        raise ValueError("plain-data encoding nested too deeply") from e
