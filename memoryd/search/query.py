"""Reading a search query: plain words, "quoted phrases" and prefix* terms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memoryd.search import lexical

_PHRASE = re.compile(r'"([^"]+)"')
_PREFIX = re.compile(r"(\w+)\*", re.UNICODE)
MIN_PREFIX_CHARS = 2


@dataclass
class ParsedQuery:
    text: str  # what is embedded: the query without its operators
    terms: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)  # case-folded, must appear verbatim
    prefixes: list[str] = field(default_factory=list)  # case-folded, matched against terms

    def matches_phrases(self, content: str) -> bool:
        folded = " ".join(lexical.words(content))
        return all(phrase in folded for phrase in self.phrases)


def parse_query(query: str) -> ParsedQuery:
    phrases = [" ".join(lexical.words(p)) for p in _PHRASE.findall(query)]
    phrases = [p for p in phrases if p]
    prefixes = [p.casefold() for p in _PREFIX.findall(query) if len(p) >= MIN_PREFIX_CHARS]
    text = _PREFIX.sub(r"\1", query).replace('"', " ")
    text = " ".join(text.split())
    without_prefixes = _PREFIX.sub(" ", query).replace('"', " ")
    return ParsedQuery(
        text=text or query,
        terms=lexical.terms(without_prefixes),
        phrases=phrases,
        prefixes=prefixes,
    )
