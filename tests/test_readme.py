"""The README is one page that works as written: its set-up commands are CI's, its example runs
(tests/test_docs.py runs it as a program, as every page's), and its links lead to pages that
exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def set_up_commands() -> list[str]:
    section = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)


def test_set_up_commands_match_ci() -> None:
    """The first command installs the command line and runs its demo; the test command
    README.md gives is the one CI runs."""
    ci = (ROOT / ".ci" / "run").read_text()
    commands = set_up_commands()
    assert len(commands) == 2
    assert "pip install -e '.[cli]'" in commands[0]
    assert commands[0].endswith(".venv/bin/jobpoll demo")
    assert commands[1] in ci.splitlines()


def test_one_page() -> None:
    """What a user needs fits on one page: at most 200 lines, one example."""
    assert len(README.splitlines()) <= 200
    assert len(re.findall(r"^```python$", README, re.M)) == 1


def test_links_lead_to_pages_that_exist() -> None:
    """Each relative link of the README names a file or folder of the repository (they work
    on GitHub and offline), and every page of the docs site but its home is linked."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    for link in local:
        assert (ROOT / link).exists(), link
    pages = {str(page.relative_to(ROOT)) for page in (ROOT / "docs").rglob("*.md")}
    assert pages - set(local) == {"docs/index.md"}  # the site's home: the README's part
