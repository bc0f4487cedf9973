"""Hiding the API key in what a server echoes back: whole, in part, or encoded.

Every run of at least `MIN_RUN` of the key's characters becomes `<redacted>`, in either case
and up to three layers of encoding deep (`%2541` is `%41` is `A`): JSON and JavaScript
escapes, percent-encoding, HTML character references. Why 6: 5 characters give away at most
30 bits of a key, while ordinary text seldom shares 6 with one by chance (a UUID-like key
with a UUID job id, about once in 20,000 ids). A shorter key is hidden whole.
"""

from __future__ import annotations

import functools
import html.entities
import re
from collections.abc import Callable

#: The shortest run of the key's characters that is hidden wherever it appears.
MIN_RUN = 6
#: What a hidden run becomes (`…` for a key that holds a run of these letters).
REDACTED = "<redacted>"
#: Characters read beyond a cut (`Redactor.cut`): room for a key of 64 characters written
#: out in full, each as `&#x2F;` and alike, at the end of what the cut keeps.
ROOM = 1024

#: One character as a server may have written it, or a stretch of characters as they are.
_TOKEN = re.compile(
    r"""
    (?P<plain>[^\\%&]+)
    | \\u(?P<u>[0-9A-Fa-f]{4})
    | \\x(?P<x>[0-9A-Fa-f]{2})
    | \\(?P<escaped>[^0-9A-Za-z])
    | %(?P<percent>[0-9A-Fa-f]{2})
    | &\#[Xx]0*(?P<hex>[0-9A-Fa-f]{1,6});?
    | &\#0*(?P<decimal>[0-9]{1,7});?
    | &(?P<name>[A-Za-z][A-Za-z0-9]{1,31});?
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
#: The characters that may start an encoded character: text without any is its own decoding.
_INTRODUCERS = ("\\", "%", "&")
#: Layers of encoding peeled off: what a server escapes may be escaped again (JSON in JSON).
_LAYERS = 3
#: Stands for a decoded character no key holds (a key is printable ASCII).
_NO_KEY_CHARACTER = "\0"
#: The folding of a character before comparing: ASCII letters to lower case, a space to `+`.
_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ ", "abcdefghijklmnopqrstuvwxyz+")
_BASES = {"u": 16, "x": 16, "percent": 16, "hex": 16, "decimal": 10}


def _character(kind: str, value: str) -> str | None:
    """The character one token stands for; None for plain text or an unknown entity name."""
    if kind in ("plain", "other"):
        return None
    if kind == "escaped":
        return value
    if kind == "name":
        named = html.entities.html5.get(value + ";")
        if named is None:
            return None
        return named if len(named) == 1 else _NO_KEY_CHARACTER
    code = int(value, _BASES[kind])
    return chr(code) if code <= 0x10FFFF else _NO_KEY_CHARACTER


def _decoded(text: str) -> tuple[str, list[int]]:
    """The text with every encoded character decoded, and where each decoded character
    starts in `text` (one more entry: the text's length)."""
    pieces: list[str] = []
    starts: list[int] = []
    for match in _TOKEN.finditer(text):  # `other` takes any character: no gap between two
        kind = match.lastgroup or "other"  # every alternative is a named group
        character = _character(kind, match.group(kind))
        start, end = match.span()
        if character is None:
            pieces.append(match.group())
            starts.extend(range(start, end))
        else:
            pieces.append(character)
            starts.append(start)
    starts.append(len(text))
    return "".join(pieces), starts


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans that overlap or touch, joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class Redactor:
    """Hides every run of the key's characters in a server's text (see the module's rule);
    the key is printable ASCII, as the client checks it."""

    def __init__(self, key: str) -> None:
        folded = key.translate(_FOLD)
        self._run = min(MIN_RUN, len(folded))
        #: Every run of `_run` characters of the key: a longer run is a chain of them.
        self._grams = frozenset(
            folded[i : i + self._run] for i in range(len(folded) - self._run + 1)
        )
        shown = REDACTED.translate(_FOLD)
        self._marker = "\u2026" if any(gram in shown for gram in self._grams) else REDACTED
        #: `self(text)` remembered, for a valid answer's few fields (a status, a user).
        self.field: Callable[[str], str] = functools.lru_cache(maxsize=1024)(self.__call__)

    def __repr__(self) -> str:
        return "<Redactor>"  # never the key, nor any part of it

    def __call__(self, text: str) -> str:
        spans = self._runs(text.translate(_FOLD))
        # What is found in each layer peeled off is mapped back, through those above, to `text`.
        layer = text
        maps: list[list[int]] = []
        while len(maps) < _LAYERS and any(introducer in layer for introducer in _INTRODUCERS):
            decoded, starts = _decoded(layer)
            if decoded == layer:
                break
            maps.append(starts)
            layer = decoded
            for start, end in self._runs(layer.translate(_FOLD)):
                for above in reversed(maps):
                    start, end = above[start], above[end]
                spans.append((start, end))
        if not spans:
            return text
        pieces: list[str] = []
        shown = 0
        for start, end in _merged(spans):
            pieces += (text[shown:start], self._marker)
            shown = end
        pieces.append(text[shown:])
        return "".join(pieces)

    def cut(self, text: str, length: int) -> str:
        """The first `length` characters of `text` once redacted (redacted before the cut,
        else a key straddling it would be missed); only `ROOM` more is read. What the cut
        keeps is redacted again: a cut inside an encoded character changes what it reads
        as (`&#1021` cut to `&#102` is an `f`)."""
        kept = self(text[: length + ROOM])[:length]
        for _ in range(_LAYERS):
            again = self(kept)
            if again == kept:
                break
            kept = again[:length]
        return kept

    def _runs(self, folded: str) -> list[tuple[int, int]]:
        """Where in a folded text runs of the key's characters are."""
        run = self._run
        spans: list[tuple[int, int]] = []
        for gram in self._grams:
            at = folded.find(gram)
            while at != -1:
                spans.append((at, at + run))
                at = folded.find(gram, at + 1)
        return _merged(spans)
