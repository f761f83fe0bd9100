"""How many nearest candidates a filtered vector search fetches (memoryd.search.filtered)."""

from __future__ import annotations

from memoryd.search.filtered import EXACT_MAX, MAX_FETCH, nearest_to_fetch


def test_an_unfiltered_scope_fetches_the_pool():
    assert nearest_to_fetch(1000, 1000, 50) == 50


def test_a_broad_filter_fetches_twice_what_its_share_predicts():
    # 40% pass: 2 x 50 / 0.4 = 250 nearest, of which ~100 pass.
    assert nearest_to_fetch(40_000, 100_000, 50) == 250
    assert nearest_to_fetch(900, 1000, 50) == 112  # ceil(2 x 50 x 1000 / 900)


def test_a_narrow_filter_ranks_every_match():
    # 1% of 100k: 10,000 nearest would be needed, above MAX_FETCH.
    assert nearest_to_fetch(1000, 100_000, 50) is None
    # Fewer matches than the nearest it would fetch: ranking them all is cheaper.
    assert nearest_to_fetch(30, 3000, 50) is None
    assert nearest_to_fetch(0, 3000, 50) is None


def test_too_many_matches_to_rank_one_by_one_fetch_anyway():
    # A large limit's pool over a huge store: fetch, however many, rather than read
    # more than EXACT_MAX stored vectors.
    fetch = nearest_to_fetch(EXACT_MAX + 1, 10_000_000, 4000)
    assert fetch is not None and fetch > MAX_FETCH


def test_a_search_in_a_small_namespace_probes_more_partitions():
    from memoryd.vector_catalog import MAX_PROBES, scoped_probes

    assert scoped_probes(40, 1.0) == 40
    assert scoped_probes(40, 0.5) == 80
    assert scoped_probes(40, 0.01) == 4000
    assert scoped_probes(40, 0.001) == scoped_probes(40, 0.0) == MAX_PROBES
