"""The console's presentation helpers (app/entrypoints/console/rendering.py): policy diffs
side by side, bar charts laid out on the server."""

from __future__ import annotations

import json

from app.entrypoints.console.rendering import bar_chart, pretty_policy, report_chart, side_by_side


def test_a_policy_is_pretty_printed_keeping_its_members_order() -> None:
    text = '{"Version":"2012-10-17","Statement":[{"Sid":"b"},{"Sid":"a"}]}'

    shown = pretty_policy(text)

    assert shown.splitlines()[1] == '  "Version": "2012-10-17",'
    assert shown.index('"b"') < shown.index('"a"')
    assert json.loads(shown) == json.loads(text)


def test_a_policy_that_is_no_json_is_shown_as_it_is() -> None:
    assert pretty_policy("not {json") == "not {json"


def test_side_by_side_pairs_unchanged_lines_and_marks_added_ones() -> None:
    before = "{\n  a\n}"
    after = "{\n  a\n  b\n}"

    rows = side_by_side(before, after)

    assert [r.kind for r in rows] == ["equal", "equal", "insert", "equal"]
    inserted = rows[2]
    assert (inserted.left_number, inserted.left) == (None, "")
    assert (inserted.right_number, inserted.right) == (3, "  b")
    assert (rows[3].left_number, rows[3].right_number) == (3, 4)


def test_side_by_side_shows_a_changed_line_on_both_sides() -> None:
    rows = side_by_side("x\nold\ny", "x\nnew\ny")

    assert [(r.kind, r.left, r.right) for r in rows][1] == ("replace", "old", "new")


def test_a_bar_chart_scales_bars_to_a_round_top() -> None:
    chart = bar_chart([("a", 3), ("b", 10), ("c", 0)], title="t", width=300, height=140)

    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.label == "b"
    assert chart.ticks[-1][1] in (10, 20, 40)  # the top grid line is a round number >= 10
    assert [bar.value for bar in chart.bars] == [3, 10, 0]
    assert chart.bars[2].height == 0
    assert chart.total == 13


def test_a_chart_of_nothing_has_no_bars_and_no_division_by_zero() -> None:
    chart = bar_chart([], title="empty")

    assert chart.bars == []
    assert chart.maximum == 0


def test_a_report_is_charted_by_its_status_column() -> None:
    rows = [{"status": "PASSED"}, {"status": "FAILED"}, {"status": "PASSED"}]

    chart = report_chart(("control", "status"), rows)

    assert chart is not None
    assert [(bar.label, bar.value) for bar in chart.bars] == [("PASSED", 2), ("FAILED", 1)]
    assert report_chart(("key_arn",), [{"key_arn": "x"}]) is None


def test_console_cookies_are_secure_over_tls_and_never_readable_by_scripts() -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from app.entrypoints.console.app import set_cookie

    def cookie(scheme: str) -> str:
        scope = {
            "type": "http",
            "scheme": scheme,
            "headers": [],
            "path": "/console/keys",
            "server": ("kms.example", 443),
            "query_string": b"",
        }
        response = Response()
        set_cookie(response, Request(scope), "keyledger_console", "token", 900)
        return response.headers["set-cookie"].lower()

    assert "secure" in cookie("https")
    assert "secure" not in cookie("http")
    for flags in (cookie("https"), cookie("http")):
        assert "httponly" in flags
        assert "samesite=strict" in flags
        assert "path=/console" in flags
