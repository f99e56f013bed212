"""`python -m routing.engine.evaluate`: the scorer evaluation (see routing.engine.tooling.evaluate).

Offline tooling needs numpy and scipy, which the proxy image does not; this entry point only
forwards to it and is never imported by the runtime modules.
"""

from __future__ import annotations

if __name__ == "__main__":
    from routing.engine.tooling.evaluate import main

    main()
