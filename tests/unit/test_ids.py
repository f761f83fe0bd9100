"""Memory ids: UUIDv7, made one at a time or a batch at a time, always ascending."""

import uuid

from memoryd.model import new_id, new_ids


def test_a_batch_of_ids_is_unique_ascending_and_valid_uuid7() -> None:
    # More than the 4,096 a millisecond's counter holds: the batch spills into the next
    # milliseconds rather than wrapping around.
    ids = new_ids(10_000)
    assert len(set(ids)) == 10_000
    assert ids == sorted(ids)
    for text in (ids[0], ids[4095], ids[4096], ids[-1]):
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_keep_ascending_across_calls() -> None:
    made = [new_id(), *new_ids(3), new_id(), *new_ids(0), *new_ids(5000), new_id()]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
