"""Build-time proof that a slimmed image still runs its role: `python image_check.py web|proxy`.

docker/slim-venv.sh drops packages the role is not expected to need; this imports every module the role can
load and exercises the litellm calls it makes, so a missing package fails the build instead of a request.
  web:   every module of controlplane, billing and routing (the LiteLLM plugin modules, the offline scorer
         tooling and the dev tools excepted: they run only in the proxy image or a checkout), Django's system
         checks, litellm's Router validation (routing.compiler.litellm_check) and its price map.
  proxy: routing.engine (tooling excepted) and routing.proxy, and LiteLLM's proxy server app that the
         entrypoint starts; no Django.
Prints one line per role: `image_check=ok role=… modules=N`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

# Only the LiteLLM proxy loads these (or a developer's checkout): never imported by web, worker or beat.
WEB_SKIP = ("routing.proxy", "routing.devtools", "routing.engine.tooling")
WEB_KEEP = ("routing.proxy.bootstrap", "routing.proxy.runtime", "routing.devtools.fake_upstream")
# The offline scorer tools need numpy/scipy, which the proxy image leaves out: routing.engine.tooling, and their
# old places in routing.engine until that move (issue 17) lands.
OFFLINE_TOOLS = ("adjust", "bench", "embedding", "evaluate", "metrics", "train")
PROXY_SKIP = ("routing.engine.tooling", *(f"routing.engine.{t}" for t in OFFLINE_TOOLS))


def modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        names.append(info.name)
    return names


def wanted(name: str, skip: tuple[str, ...], keep: tuple[str, ...] = ()) -> bool:
    """Not in (or under) a skipped package, unless named in keep."""
    return name in keep or not any(name == s or name.startswith(f"{s}.") for s in skip)


def import_all(names: list[str]) -> int:
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report them all, then fail
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        print("image_check: these modules do not import in this image:", *failed, sep="\n  ", file=sys.stderr)
        raise SystemExit(1)
    return len(names)


def check_web() -> int:
    # settings refuse to load without secrets outside DEBUG: throwaway values, this process serves nothing
    os.environ.setdefault("SECRET_KEY", "image-check-only-never-served")
    os.environ.setdefault("FINOPS_BUNDLE_SIGNING_KEY", "image-check-only")
    os.environ.setdefault("FINOPS_VAR_DIR", "/tmp/finops-image-check")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    names = [
        n
        for package in ("controlplane", "billing", "routing")
        for n in modules(package)
        if wanted(n, WEB_SKIP, WEB_KEEP)
    ]
    count = import_all(names)
    from django.core.management import call_command

    call_command("check", verbosity=0)
    import litellm

    from routing.compiler import litellm_check

    entry = {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/K"}}
    errors = litellm_check({"model_list": [entry]}, [])
    if errors:
        raise SystemExit(f"image_check: litellm's Router refuses a plain deployment here: {errors}")
    if not litellm.model_cost.get("gpt-4o-mini"):
        raise SystemExit("image_check: litellm's price map is empty (LITELLM_LOCAL_MODEL_COST_MAP=True?)")
    return count


def check_proxy() -> int:
    names = [
        n
        for package in ("routing.engine", "routing.proxy")
        for n in modules(package)
        if wanted(n, PROXY_SKIP)
    ]
    count = import_all(names)
    importlib.import_module("litellm.proxy.proxy_server")
    return count + 1


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    checks = {"web": check_web, "proxy": check_proxy}
    if role not in checks:
        raise SystemExit("usage: python image_check.py web|proxy")
    print(f"image_check=ok role={role} modules={checks[role]()}")


if __name__ == "__main__":
    main()
