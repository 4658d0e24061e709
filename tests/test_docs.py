"""The README and docs/ stay true: every `ecgtool` command line in their code blocks names a subcommand and
options that exist, and every relative link points at a file that is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_examples import invocation_errors, invocations_in

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_lines(page: Path) -> list[tuple[int, list[str]]]:
    """The `ecgtool` invocations of a page's fenced code blocks, with their line numbers in the page."""
    text = page.read_text()
    found = []
    for block in FENCE.finditer(text):
        offset = text[:block.start(1)].count("\n")
        found += [(offset + n, args) for n, args in invocations_in(block.group(1))]
    return found


COMMAND_LINES = [(page, n, args) for page in PAGES for n, args in code_lines(page)]


def test_the_pages_show_command_lines():
    assert len(COMMAND_LINES) > 40
    assert {p.name for p, _, _ in COMMAND_LINES} >= {"README.md", "transfer.md", "cluster.md", "distill.md"}


@pytest.mark.parametrize("page, line, args", COMMAND_LINES, ids=[f"{p.name}:{n}" for p, n, _ in COMMAND_LINES])
def test_command_line_is_runnable(page, line, args):
    if args in (["--help"], ["--version"]):
        return
    assert not invocation_errors(args), f"{page.relative_to(ROOT)}:{line}: {'; '.join(invocation_errors(args))}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
