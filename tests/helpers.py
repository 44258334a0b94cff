"""Small assertions shared by CLI tests (registered as ``langfield_test_helpers`` by tests/conftest.py)."""

from __future__ import annotations


def one_error_line(capsys) -> str:
    """The single ``error: ...`` line a failed command printed on stderr (no traceback, nothing else)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
