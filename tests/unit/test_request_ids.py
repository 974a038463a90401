"""Request ids are version-4 UUIDs in text form, never repeated."""

from __future__ import annotations

import multiprocessing
import uuid

from app.support.request_ids import new_request_id


def test_a_request_id_is_a_random_uuid_in_its_text_form() -> None:
    for _ in range(2_000):  # across several refills of the buffer
        text = new_request_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_request_ids_do_not_repeat() -> None:
    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)


def _ids_in_child(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_request_id() for _ in range(10)])


def test_a_forked_process_does_not_repeat_its_parents_next_ids() -> None:
    new_request_id()  # the parent's buffer is filled
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_ids_in_child, args=(queue,))
    child.start()
    from_child = queue.get(timeout=30)
    child.join()
    from_parent = [new_request_id() for _ in range(10)]
    assert not set(from_child) & set(from_parent)
