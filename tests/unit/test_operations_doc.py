"""docs/operations.md names only commands and options the real CLI has."""

import re
from pathlib import Path

import click

from replicator.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
INVOCATION = re.compile(r"\breplicator ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)([^`\n]*)")


def invocations() -> list[tuple[str, list[str], set[str]]]:
    """(the line, the command path, the --options after it) for every `replicator <command>` in the doc."""
    text = re.sub(r"\\\n\s*", " ", DOC.read_text())  # join shell continuation lines
    found = []
    for line in text.splitlines():
        for m in INVOCATION.finditer(line):
            words = m.group(1).split()
            if words[0] not in main.commands:
                continue  # prose: "the replicator user", "replicator processes"
            found.append((line, words, set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", m.group(2)))))
    return found


def test_every_command_and_option_in_the_operations_doc_exists():
    seen = set()
    for line, words, options in invocations():
        _, command, rest = main.resolve_command(click.Context(main), list(words))  # as the CLI routes it
        if isinstance(command, click.Group):
            assert rest and rest[0] in command.commands, f"no `replicator {' '.join(words)}`: {line}"
            command = command.commands[rest[0]]
        known = {opt for p in command.params for opt in getattr(p, "opts", [])} | {"--help"}
        assert options <= known, f"`replicator {command.name}` has no {sorted(options - known)}: {line}"
        seen.add(command.name)
    # The doc covers every operator command, and the journal commands another module provides.
    assert {"health", "verify", "rotate", "erase", "list", "retry", "drop", "reconcile"} <= seen, seen
