"""The import contracts of pyproject.toml ([tool.importlinter]): apps import downwards only (billing -> routing
-> controlplane), the proxy's core stays free of Django, and no app has a cycle between its modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS.exists(), (
        f"{LINT_IMPORTS} is missing: install the dev extra (pip install -e '.[dev]'), it pins import-linter"
    )
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_every_import_contract_is_kept():
    result = _lint()
    assert result.returncode == 0, f"lint-imports found a broken contract:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout


def test_a_broken_contract_fails_the_check(tmp_path):
    """The check has teeth: a contract the code breaks (routing imports controlplane) is reported."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["controlplane", "routing"]\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "routing must not import controlplane (false on purpose)"\n'
        'type = "forbidden"\n'
        'source_modules = ["routing.services"]\n'
        'forbidden_modules = ["controlplane"]\n'
    )
    result = _lint("--config", str(config))
    assert result.returncode != 0
    assert "routing.services" in result.stdout and "controlplane" in result.stdout
