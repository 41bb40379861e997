"""Words for the messages people read: counts with their nouns."""

from __future__ import annotations


def plural(n: int, noun: str) -> str:
    """`n` and the noun, plural but for one: "1 crime", "2,500 crimes", "0 tokens"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
