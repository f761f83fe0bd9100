"""Index terms: stop words out, stems in. (``\\w+`` splits "don't" into "don" and "t";
only "t" is a stop word.)"""

from __future__ import annotations

from memoryd.search import lexical


def test_terms_drop_stop_words_and_stem():
    text = "Don't you think the runners were running to ERR_42 in Zürich? It's the café's ﬁle."
    assert lexical.terms(text) == ["don", "think", "runner", "run", "err_42", "zürich", "café",
                                   "file"]
    assert lexical.terms("the a an it's") == []
    assert lexical.terms("") == []
