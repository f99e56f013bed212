"""gunicorn settings for the web image: gunicorn reads ./gunicorn.conf.py from its working directory, /app.

Django and every view module (DRF, numpy, scipy.stats) are loaded once in the master before the workers
fork. Loaded lazily instead, the URL conf was imported by each worker's first request (the healthcheck's):
about 2 s of CPU, which on a loaded 2-core machine outlasted the 30 s worker timeout, so gunicorn killed
and respawned workers in a loop and web never became healthy. Forked workers share the loaded pages.
"""

preload_app = True


def when_ready(server):  # in the master, after the app is loaded and before any worker is forked
    from django.db import connections
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module
    connections.close_all()  # no connection may be shared across the fork
