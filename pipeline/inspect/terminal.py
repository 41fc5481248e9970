"""Text read from an output, made safe to print on a terminal: control characters escaped, one line a value.

Ids and kept text are input data: printed raw, an escape sequence in one drives the terminal (clears
the screen, retitles the window) and a newline in one forges a line of the result.
"""

from __future__ import annotations

import re

# Escaped, as Python writes them: the controls (C0, DEL, C1: cursor moves, screen clears, line breaks), the line
# and paragraph separators (line breaks to str.splitlines and many viewers), the bidi embeddings, overrides and
# isolates (an unclosed one reorders the rest of the line, so an id could show as another or move a column), lone
# surrogates (which no terminal encoding takes), and the backslash, so that an escape always stands for one
# character. Zero-width joiners and the direction marks LRM and RLM are kept: emoji and Persian need them, and
# they reorder no more than a letter would.
UNPRINTABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """text with each UNPRINTABLE character as its Python escape (\\x1b, \\n, \\u202e, \\\\); all else as is."""
    return UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


def one_line(text: str, width: int) -> str:
    """text as at most width printable characters: runs of whitespace made one space, cut between escapes."""
    text = " ".join(text.split())
    pieces = [printable(c) for c in text[: width + 1]]  # escaping only lengthens: these are all that can show
    if len(text) <= width and sum(map(len, pieces)) <= width:
        return "".join(pieces)
    shown, used = [], 0
    for piece in pieces:
        if used + len(piece) > width - 3:
            break
        shown.append(piece)
        used += len(piece)
    return "".join(shown) + "..."
