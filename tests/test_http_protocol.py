import pytest

from cdrgate.http_lenient import fix_request_line


@pytest.mark.parametrize(
    ("line", "fixed"),
    [
        (
            b"GET /api/v1.1.0/cdr/download?starttime=2018-11-07 00:00:00&x=1 HTTP/1.1",
            b"GET /api/v1.1.0/cdr/download?starttime=2018-11-07%2000:00:00&x=1 HTTP/1.1",
        ),
        (b"POST /a?b=c d e HTTP/1.0", b"POST /a?b=c%20d%20e HTTP/1.0"),
        (b"GET /plain HTTP/1.1", b"GET /plain HTTP/1.1"),
        (b"garbage without version", b"garbage without version"),
    ],
)
def test_spaces_in_the_target_are_encoded_and_nothing_else_changes(line, fixed):
    assert fix_request_line(line) == fixed
