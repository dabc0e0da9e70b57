"""Shared fixtures of the kip-py test suite.

Run from the repository root after ``maturin develop --release -m
kip-py/Cargo.toml``::

    python -m pytest kip-py/tests -q

Tests that compare with the ``kip`` command-line tool find it through
``$KIP_BIN`` or at ``<repo>/target/release/kip``; without it they are
skipped (reason printed at the end of the run), unless ``KIP_REQUIRE_CLI=1``
(as in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parents[1]

# The helpers module next to this file, importable whatever pytest's import mode.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

_CLI_SKIPS: list[str] = []


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip() not in ("", "0", "false", "False", "no")


@pytest.fixture(scope="session")
def kip_bin() -> Path:
    """The ``kip`` CLI binary: ``$KIP_BIN``, else ``<repo>/target/release/kip``."""
    env = os.environ.get("KIP_BIN")
    path = Path(env) if env else REPO / "target" / "release" / "kip"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    reason = (
        f"kip CLI not found at {path} ({'from $KIP_BIN' if env else 'default location'}); "
        "build it with `cargo build --release -p kip-cli` or set KIP_BIN"
    )
    if _truthy(os.environ.get("KIP_REQUIRE_CLI")):
        pytest.fail(f"KIP_REQUIRE_CLI is set but {reason}", pytrace=False)
    if reason not in _CLI_SKIPS:
        _CLI_SKIPS.append(reason)
        print(f"\nSKIP (CLI tests): {reason}", file=sys.stderr)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    for reason in _CLI_SKIPS:
        terminalreporter.write_line(f"CLI tests skipped: {reason}", yellow=True)


@pytest.fixture(scope="session")
def digits():
    """``((x_train, y_train), (x_test, y_test))`` of the embedded digits set."""
    import kip

    return kip.load_dataset("digits")
