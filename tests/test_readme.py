"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = (Path(__file__).parent.parent / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


async def test_fake_service_example() -> None:
    """The README's test against the fake service passes."""
    (block,) = [block for block in python_blocks() if "async def test_my_worker" in block]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    await namespace["test_my_worker"]()


def test_set_up_commands_match_ci() -> None:
    """The test command README.md gives is the one CI runs."""
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)
    assert len(commands) == 2
    assert "examples/demo.py" in commands[0]
    assert commands[1] in ci.splitlines()


def test_every_python_block_compiles() -> None:
    """Each Python example is valid Python (the one that needs the real service included)."""
    blocks = python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        compile(block, "README.md", "exec")
