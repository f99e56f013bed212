"""The scorer must load and score in a process where Django cannot be imported (a proxy image)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoDjango(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "django" or name.startswith("django."):
                raise ImportError(f"django cannot be imported here ({name})")

    sys.meta_path.insert(0, NoDjango())
    from routing.engine import ComplexityScorer
    from routing.engine.calibration import threshold_for_small_share
    import routing.engine.scorer, routing.engine.signals

    score = ComplexityScorer.default().score([{"role": "user", "content": "Prove that 2 is prime."}])
    assert 0.0 <= score <= 1.0
    assert threshold_for_small_share([0.1, 0.9], 0.5) == 0.9
    assert not any(name == "django" or name.startswith("django.") for name in sys.modules)
    assert "numpy" not in sys.modules, "the hot path must not need numpy"
    print("ok", score)
    """
)


def test_scorer_works_without_django_or_numpy():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


RUNTIME_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    class OfflineOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            for blocked in ("numpy", "scipy", "routing.engine.tooling"):
                if name == blocked or name.startswith(blocked + "."):
                    raise ImportError(f"{name} is offline tooling; the runtime path must not import it")

    sys.meta_path.insert(0, OfflineOnly())
    import routing.engine
    names = [m.name for m in pkgutil.iter_modules(routing.engine.__path__) if m.name != "tooling"]
    for name in names:
        importlib.import_module(f"routing.engine.{name}")
    print("ok", ",".join(sorted(names)))
    """
)


def test_runtime_modules_import_no_tooling_numpy_or_scipy():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()[1].split(",")
    assert {"scorer", "signals", "decision", "bundle", "spend", "signing", "calibration"} <= set(loaded)
    assert not {"train", "bench", "embedding", "metrics", "adjust"} & set(loaded)
    # `python -m routing.engine.evaluate` is the command: a forwarder that imported here, under
    # the blocker above, without pulling in the tooling, numpy or scipy.
    assert "evaluate" in loaded
