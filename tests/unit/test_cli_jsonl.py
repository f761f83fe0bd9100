"""The import file format: line parsing and batching by count and by request size."""

from __future__ import annotations

import json

import pytest
from memory_cli import jsonl


def test_export_fields_are_dropped_and_nulls_mean_absent() -> None:
    line = json.dumps({"id": "x", "content": "c", "updated_at": "t", "accessed_at": None,
                       "access_count": 2, "embedded": False, "thread": None, "source": "s",
                       "expires_at": None})
    assert jsonl.parse_line(line) == {"content": "c", "source": "s"}


@pytest.mark.parametrize(("line", "message"), [
    ("{", "not valid JSON"),
    ("42", "expected a JSON object, got int"),
    ('{"content": null}', "content is required"),
    ('{"content": "x", "a": 1, "b": 2}', "unknown fields: a, b"),
])
def test_bad_lines(line: str, message: str) -> None:
    with pytest.raises(jsonl.LineError, match=message):
        jsonl.parse_line(line)


def test_namespace_default_and_override() -> None:
    own = '{"content": "x", "namespace": "own"}'
    bare = '{"content": "x"}'
    assert jsonl.parse_line(own, default_namespace="d")["namespace"] == "own"
    assert jsonl.parse_line(bare, default_namespace="d")["namespace"] == "d"
    assert jsonl.parse_line(own, default_namespace="d", into_namespace="i")["namespace"] == "i"


def test_batches_respect_the_request_size_and_report_oversized_lines() -> None:
    big = json.dumps({"content": "x" * 3000})
    huge = json.dumps({"content": "y" * 20000})
    lines = [big, "", big, huge, big, "   ", big]
    problems: list[jsonl.Problem] = []
    found = list(jsonl.batches(lines, max_request_bytes=8000, problems=problems))
    assert [b.lines for b in found] == [[1, 3], [5, 7]]
    assert sum(b.consumed for b in found) == len(lines)  # every line moves the progress bar
    assert all(b.size <= 8000 - jsonl.ENVELOPE_BYTES for b in found)
    assert [(p.line, p.name) for p in problems] == [(4, "request_too_large")]
    assert "too large" in problems[0].message


def test_batches_hold_at_most_1000_items() -> None:
    lines = [json.dumps({"content": str(i)}) for i in range(2001)]
    found = list(jsonl.batches(lines, max_request_bytes=1 << 22, problems=[]))
    assert [len(b.items) for b in found] == [1000, 1000, 1]
    assert found[1].lines[0] == 1001


def test_a_batch_is_never_more_than_the_daemon_takes_in_one_call() -> None:
    from memoryd.service import IMPORT_BATCH_MAX

    assert jsonl.BATCH_ITEMS <= IMPORT_BATCH_MAX
