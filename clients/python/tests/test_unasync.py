"""client.py is what scripts/unasync.py generates from aio.py now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "unasync.py"


def test_sync_client_is_generated_from_aio() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr


def test_generated_file_says_so() -> None:
    client = SCRIPT.parents[1] / "src" / "stigmer_client" / "client.py"
    head = "".join(client.read_text(encoding="utf-8").splitlines(keepends=True)[:3])
    assert "Generated" in head and "do not edit" in head and "unasync.py" in head
