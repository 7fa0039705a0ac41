"""The committed generated code is what scripts/regen_proto.py makes from proto/ now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
SCRIPT = PACKAGE / "scripts" / "regen_proto.py"
COMMITTED = PACKAGE / "src" / "stigmer_client" / "_proto"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True)
    fresh = _tree(out)
    committed = _tree(COMMITTED)
    assert sorted(fresh) == sorted(committed), "generated files added or removed: rerun " + str(
        SCRIPT
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run python {SCRIPT}"
