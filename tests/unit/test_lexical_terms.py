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


TEXTS = [
    "Don't you think the runners were running to ERR_42 in Zürich?",
    "It's the café's ﬁle: 3.14, x_y-z, tab\there, new\nline, NUL\x00byte",
    "STRASSE and Straße; the Kelvin sign \u212a; ΣΊΣΥΦΟΣ; 東京タワー",
    "a" * 64 + " " + "b" * 65 + " keeps the first, drops the second",
    "",
    "the a an it's",
    "Runners running: the runner ran",
]


def test_ascii_text_splits_into_the_tokens_of_the_regular_expression():
    import random
    import unicodedata

    rng = random.Random(5)
    samples = ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(40)))
               for _ in range(5000)]
    for text in samples + TEXTS:
        normal = unicodedata.normalize("NFKC", text).casefold()
        assert lexical._tokens(text) == lexical._TOKEN.findall(normal), repr(text)


def test_a_batch_counts_the_terms_each_text_has_alone():
    assert lexical.term_counts_of(TEXTS) == [lexical.term_counts(t) for t in TEXTS]
    assert lexical.term_counts_of([]) == []


def test_a_batch_splits_into_the_words_each_text_has_alone():
    import random

    rng = random.Random(7)
    # Texts that start with combining marks (which must not join the text before them),
    # end mid-word, hold compatibility characters, or are all ASCII.
    pieces = ["\u0301a", "e\u0301", "ﬁ", "Ⅻ", "ß", "ΣΑΣ", "x", " ", "_", "-", "9", "東"]
    mixed = ["".join(rng.choice(pieces) for _ in range(rng.randrange(6))) for _ in range(500)]
    ascii_only = ["".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(30)))
                  for _ in range(500)]
    for batch in (TEXTS, mixed, ascii_only, TEXTS[:4] + ["unit\x1fseparator"], [""], []):
        assert lexical.words_of(batch) == [lexical.words(t) for t in batch], batch


def test_documents_take_their_labels_and_the_turn_before_them():
    analyzer = lexical.DocumentAnalyzer()
    documents = [
        ("Yes, last Friday!", {"speaker": "Caroline"}, ("Did you go running?", {"speaker": "Mel"})),
        ("Painting again", None, None),
        ("Runners everywhere", {"title": "Marathon"}, ("", None)),
    ]
    expected = [
        lexical.term_counts("Caroline: Yes, last Friday! Mel: Did you go running?"),
        lexical.term_counts("Painting again"),
        lexical.term_counts("Marathon: Runners everywhere"),
    ]
    assert analyzer.documents_terms(documents) == expected
    alone = lexical.DocumentAnalyzer(thread_context=False).documents_terms(documents)
    assert alone[0] == lexical.term_counts("Caroline: Yes, last Friday!")
