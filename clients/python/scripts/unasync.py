#!/usr/bin/env python3
"""Generate the synchronous client (``client.py``) from the asyncio one (``aio.py``).

The two clients are the same code but for ``async``/``await``: the asyncio one
is written by hand and this script derives the other, as httpcore does with its
``unasync`` script. It strips ``async``/``await``, renames the asyncio names
(``AsyncClient`` to ``Client``, ``__aenter__`` to ``__enter__``,
``AsyncSocket`` to ``SyncSocket``, ...), adjusts a few phrases of the
documentation and replaces the module docstring. The blocking twins of the
asyncio primitives are in ``src/stigmer_client/_transport.py``.

Usage (from anywhere; needs only Python)::

    python clients/python/scripts/unasync.py          # rewrite src/stigmer_client/client.py
    python clients/python/scripts/unasync.py --check  # exit 1 when client.py is stale

``scripts/test-python`` runs ``--check``, and so does ``tests/test_unasync.py``.
The output is not reformatted: ``ruff format --check`` must accept both files,
so when it would join lines of ``client.py`` that ``await`` made too long in
``aio.py``, reword ``aio.py`` (a longer name, a local variable).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import List, Optional, Tuple

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent / "src" / "stigmer_client"
SOURCE = PACKAGE_DIR / "aio.py"
TARGET = PACKAGE_DIR / "client.py"
COMMAND = "python clients/python/scripts/unasync.py"

HEADER = f"""\
# Generated from aio.py by scripts/unasync.py: do not edit.
# Edit src/stigmer_client/aio.py instead, then run: {COMMAND}
"""

#: The generated module's docstring (it replaces the asyncio module's).
DOCSTRING = '''\
"""The synchronous client: one connection, shared by concurrent calls and subscriptions.

Generated from ``aio.py``, the asyncio client, by ``scripts/unasync.py``; the
blocking socket, lock and waiting primitives it uses are in ``_transport.py``.
"""'''

#: Code: (regular expression, replacement), applied in this order.
RULES: List[Tuple[str, str]] = [
    # "(await self.f(...)).attr" -> "self.f(...).attr" (one level of nested calls)
    (r"\(await (self\.\w+\((?:[^()]|\([^()]*\))*\))\)", r"\1"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncClient\b", "Client"),
    (r"\bAsyncSubscription\b", "Subscription"),
    (r"\bAsyncWatcher\b", "Watcher"),
    (r"\bAsyncSocket\b", "SyncSocket"),
    (r"\bAsyncLock\b", "SyncLock"),
    (r"\bAsyncWaiters\b", "SyncWaiters"),
    (r"\basync_sleep\b", "sync_sleep"),
]

#: Documentation: (phrase, replacement); each phrase must occur in the source.
PHRASES: List[Tuple[str, str]] = [
    ("An asyncio client of", "A synchronous client of"),
    ("any number of tasks", "any number of threads"),
]

#: What must not survive the conversion (a rule is missing when it does).
LEFTOVER = re.compile(
    r"\basync\b|\bawait\b|asyncio|Async|\b__a(?:enter|exit|iter|next)__\b|\baclose\b"
)
_DOCSTRING = re.compile(r'\A"""(?:[^"]|"(?!""))*"""', re.DOTALL)


class UnasyncError(Exception):
    """The source cannot be converted (a phrase is gone, or a name has no rule)."""


def unasync(source: str) -> str:
    """Return the synchronous module generated from the asyncio module ``source``."""
    docstring = _DOCSTRING.match(source)
    if docstring is None:
        raise UnasyncError(f"{SOURCE.name} must open with its docstring")
    text = source[docstring.end() :]
    for phrase, replacement in PHRASES:
        if phrase not in text:
            raise UnasyncError(f"phrase {phrase!r} not found in {SOURCE.name}: update PHRASES")
        text = text.replace(phrase, replacement)
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    for line in text.splitlines():
        if LEFTOVER.search(line):
            raise UnasyncError(f"no rule converts this line of {SOURCE.name}: {line.strip()}")
    return HEADER + DOCSTRING + text


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when client.py differs from what would be written",
    )
    args = parser.parse_args(argv)
    try:
        generated = unasync(SOURCE.read_text(encoding="utf-8"))
    except UnasyncError as exc:
        print(f"unasync: {exc}", file=sys.stderr)
        return 2
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if args.check:
        if current == generated:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "client.py (as it is)",
            "client.py (generated from aio.py)",
        )
        sys.stderr.writelines(list(diff)[:60])
        print(
            f"unasync: {TARGET} is stale: it is generated from aio.py and must not be "
            f"edited by hand. Edit aio.py, then run: {COMMAND}",
            file=sys.stderr,
        )
        return 1
    if current != generated:
        TARGET.write_text(generated, encoding="utf-8")
        print(f"unasync: wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
