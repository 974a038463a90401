"""The audit trail writes its rows in COPY's text format itself (projections/audit_trail.py).
Its fast path, for rows with nothing to escape, must write exactly what escaping each value
writes, whatever the text: tabs, line breaks, backslashes, quotes and NULs included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from projections.audit_trail import (
    EVENT_ID_NAMESPACE,
    _array,
    _copy_line,
    _escaped_copy_line,
    _event_time_of,
    event_id,
    event_time,
    without_nul,
)

# Mostly plain text, with every character COPY or an array literal treats specially.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), st.sampled_from(["\t", "\n", "\r", "\\", '"', "\x00", ","])
    ),
    max_size=12,
)


def _row(texts: list[str], error_code: str | None, resource_type: str | None) -> tuple:  # type: ignore[type-arg]
    return (
        42,
        texts[0],
        str(uuid.UUID(int=1)),
        None,
        datetime(2026, 3, 1, 10, 15, 30, 123456, tzinfo=UTC).isoformat(),
        texts[1],
        texts[2],
        True,
        *texts[3:10],
        error_code,
        resource_type,
        texts[10],
        _array(texts[11:13]),
        _array(texts[13:14]),
        texts[14],
    )


@given(st.lists(TEXT, min_size=15, max_size=15), st.none() | TEXT, st.none() | TEXT)
def test_a_row_is_written_as_escaping_each_value_writes_it(
    texts: list[str], error_code: str | None, resource_type: str | None
) -> None:
    row = _row(texts, error_code, resource_type)
    assert _copy_line(row) == _escaped_copy_line(row)


@given(st.lists(TEXT, max_size=4))
def test_an_array_literal_quotes_and_escapes_every_element(items: list[str]) -> None:
    escaped = [without_nul(i).replace("\\", "\\\\").replace('"', '\\"') for i in items]
    expected = "{" + ",".join(f'"{item}"' for item in escaped) + "}" if items else "{}"
    assert _array(items) == expected


@given(st.text(max_size=80))
def test_an_event_id_is_the_name_based_uuid5_of_the_ledger_event(name: str) -> None:
    assert event_id(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


@given(st.datetimes(timezones=st.just(UTC)) | st.datetimes())
def test_event_time_from_iso_text_is_the_strftime_of_the_moment(moment: datetime) -> None:
    assert _event_time_of(moment.isoformat(), moment) == event_time(moment)
