from __future__ import annotations

import contextlib

import pytest

from tests.helpers import serve_directory


@pytest.fixture
def http_server():
    """For one test: a function that serves a directory and returns its base URL."""
    with contextlib.ExitStack() as stack:
        yield lambda directory: stack.enter_context(serve_directory(directory))
