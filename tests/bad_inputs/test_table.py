"""The bad-input table renders one line per kind, in catalogue order."""

from tests.bad_inputs.table import Outcome, Row, render


def test_rows_render_in_catalogue_order_with_reason_on_one_line() -> None:
    rows = [
        Row(6, "key is not the workflow ID", Outcome.DEAD_LETTERED, "key b'x' is not\n'y'", "t"),
        Row(1, "garbage bytes", Outcome.DEAD_LETTERED, "undecodable | at 0", "t"),
    ]

    lines = render(rows).splitlines()

    assert lines[2] == r"| 1 | garbage bytes | dead-lettered | undecodable \| at 0 |"
    assert lines[3] == "| 6 | key is not the workflow ID | dead-lettered | key b'x' is not 'y' |"
