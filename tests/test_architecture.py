"""The architecture holds: imports point down the floors (import-linter), and docs/ARCHITECTURE.md's stage table
is the registry's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_the_floors_contract_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    result = subprocess.run([lint], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_the_architecture_stage_table_is_the_registrys():
    from rtune.pipeline.registry import stages_markdown

    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- stage table: .*? -->\n(.*?)\n<!-- end of stage table -->", text, re.S).group(1)
    assert table == stages_markdown()


def test_the_cli_commands_are_the_registered_stages():
    from rtune.cli.main import build_cli
    from rtune.pipeline.registry import STAGES

    commands = build_cli().commands
    for name, spec in STAGES.items():
        assert commands[name].help == spec.help
