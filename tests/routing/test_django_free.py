"""routing.engine and routing.proxy must import where Django cannot: proxies install them without it."""

import subprocess
import sys
import textwrap

BLOCK_DJANGO = textwrap.dedent(
    """
    import importlib.abc, sys
    class NoDjango(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "django" or name.startswith("django.") or name.startswith("rest_framework"):
                raise ImportError(f"django is not installed here ({name})")
    sys.meta_path.insert(0, NoDjango())
    """
)


def test_engine_and_proxy_import_without_django():
    code = (
        BLOCK_DJANGO
        + "import routing.engine, routing.proxy, routing.engine.spend, routing.engine.signing\nprint('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_blocker_really_blocks_django():
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_DJANGO + "import django"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "django is not installed here" in result.stderr


def test_no_django_import_anywhere_under_engine_or_proxy():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "routing"
    offenders = [
        str(path)
        for sub in ("engine", "proxy")
        for path in (root / sub).rglob("*.py")
        if any(
            line.strip().startswith(
                ("import django", "from django", "import rest_framework", "from rest_framework")
            )
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
