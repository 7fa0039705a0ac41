"""Every Python example in clients/python/README.md runs to completion as
written, against a real daemon (the socket comes from ``$STIGMER_SOCKET``,
as a user's would from the default path)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon

README = Path(__file__).resolve().parents[1] / "README.md"
#: A guard against a hang only (an example that never ends is the bug).
DEADLINE = 60.0


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples() -> None:
    assert len(examples()) >= 2


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_example_runs(daemon: Daemon, index: int) -> None:
    env = dict(os.environ, STIGMER_SOCKET=daemon.socket_path)
    done = subprocess.run(
        [sys.executable, "-c", examples()[index]],
        env=env,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
