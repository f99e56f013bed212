"""Settings for the control plane, all from the environment (see the configuration table in README.md)."""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import env_bool, env_float, env_int, env_list, env_secret, env_str

os.environ.setdefault(
    "LITELLM_LOCAL_MODEL_COST_MAP", "True"
)  # never fetch litellm's price map from the internet

# Where templates/ and static/ live: the source tree by default; an installed package (the Docker image) has
# them elsewhere and says so with FINOPS_BASE_DIR (else BASE_DIR would point into site-packages).
BASE_DIR = Path(env_str("FINOPS_BASE_DIR", str(Path(__file__).resolve().parent.parent)))
VAR_DIR = Path(env_str("FINOPS_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

TESTING = "pytest" in sys.modules or env_bool("FINOPS_TESTING")
DEBUG = env_bool("DEBUG", False)
ENVIRONMENT = env_str("FINOPS_ENV", "dev" if DEBUG else "production")

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-dev-only-key-never-used-in-production-3f9a1c7e5b2d"  # noqa: S105
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: export SECRET_KEY (50+ random characters) or SECRET_KEY_FILE, "
            "or set DEBUG=true for local development"
        )

# Ed25519 seed the control plane signs bundles with; proxies trust its public key (docs/security.md).
FINOPS_BUNDLE_SIGNING_KEY = env_secret("FINOPS_BUNDLE_SIGNING_KEY")
if not FINOPS_BUNDLE_SIGNING_KEY:
    if DEBUG or TESTING:
        # kept here: the published dev seed is loaded only when DEBUG or tests allow it, never in production
        from routing.engine.signing import DEV_BUNDLE_SIGNING_SEED

        FINOPS_BUNDLE_SIGNING_KEY = (
            DEV_BUNDLE_SIGNING_SEED  # a published dev key: never outside DEBUG and tests
        )
    else:
        raise ImproperlyConfigured(
            "FINOPS_BUNDLE_SIGNING_KEY is not set: run `python -m routing.engine.signing new-key`, set the "
            "key here (or FINOPS_BUNDLE_SIGNING_KEY_FILE) and its public half as FINOPS_BUNDLE_PUBLIC_KEYS "
            "on every proxy, or set DEBUG=true for local development"
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if (DEBUG or TESTING) else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "controlplane",
    "routing",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "controlplane.middleware.RequestIdMiddleware",
    "controlplane.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlplane.context_processors.navigation",
            ],
        },
    },
]


def database_from_url(url: str) -> dict[str, object]:
    """`postgres://user:pass@host:port/name` or `sqlite:///path` → a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
            "TEST": {"NAME": env_str("DATABASE_TEST_NAME", "test_finops")},
        }
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if path.startswith("//"):
            path = path[1:]
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path.lstrip("/") if parsed.netloc == "." else (path or str(VAR_DIR / "finops.sqlite3")),
            # WAL lets the demo's web, worker and beat read while one of them writes; busy timeout 20 s
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parsed.scheme!r} is not supported: use postgres:// or sqlite:///"
    )


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'finops.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast fixtures; never outside tests
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(
    env_str("FINOPS_STATIC_ROOT", str(VAR_DIR / "staticfiles"))
)  # the image collects into /app
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(find_spec("plotly").origin).parent / "package_data"),  # plotly.min.js, never a CDN
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not (DEBUG or TESTING)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# Security: production defaults; the dev server (DEBUG) relaxes the HTTPS-only ones.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not (DEBUG or TESTING))
# Plain-HTTP paths even with the redirect on: health probes come from inside the container or the
# orchestrator, never through the TLS front; SECURE_REDIRECT_EXEMPT adds more (regexes, no leading slash).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", *env_list("SECURE_REDIRECT_EXEMPT", [])]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not (DEBUG or TESTING))
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not (DEBUG or TESTING))
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if (DEBUG or TESTING) else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS: list[str] = []

# Redis when REDIS_URL/CELERY_BROKER_URL says so; embedded defaults need no server.
REDIS_URL = env_str("REDIS_URL", "")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
# Tests get a throwaway broker folder so queued-but-unconsumed tasks never pile up in ./var.
_BROKER_DIR = Path(tempfile.mkdtemp(prefix="finops-broker-")) if TESTING else VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("in", "processed", "control"):
        (_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "in"),
        "data_folder_out": str(_BROKER_DIR / "in"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),  # else kombu writes ./control in the working dir
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_ACKS_LATE = True  # tasks are idempotent, so redelivery after a crash is safe
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Periodic work; each app adds its entries here, all crontab with an expiry so a backlog never piles up.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "controlplane-heartbeat": {
        "task": "controlplane.tasks.beat_heartbeat",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55},
    },
}

from billing.schedule import BEAT_SCHEDULE as _BILLING_BEAT  # noqa: E402
from routing.schedule import BEAT_SCHEDULE as _ROUTING_BEAT  # noqa: E402

CELERY_BEAT_SCHEDULE |= _ROUTING_BEAT | _BILLING_BEAT

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",  # first, so a bad token answers 401, not 403
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FinOps control plane API",
    "DESCRIPTION": "Teams, features, routing, spend ingestion and fleet management.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "REDOC_DIST": "SIDECAR",  # served from our static files, never a CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Redoc's default theme names Montserrat/Roboto: use the system fonts, never fetch web fonts
    "REDOC_UI_SETTINGS": {
        "theme": {
            "typography": {
                "fontFamily": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
                "headings": {"fontFamily": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"},
            }
        }
    },
}

# Datadog (DogStatsD over UDP)
DATADOG_AGENT_HOST = env_str("DATADOG_AGENT_HOST", "127.0.0.1")
DATADOG_AGENT_PORT = env_int("DATADOG_AGENT_PORT", 8125)
DATADOG_ENABLED = env_bool("DATADOG_ENABLED", True)

# Spend ingestion (billing)
FINOPS_INGEST_MAX_BYTES = env_int("FINOPS_INGEST_MAX_BYTES", 2_000_000)
FINOPS_INGEST_MAX_RECORDS = env_int("FINOPS_INGEST_MAX_RECORDS", 5000)
FINOPS_INGEST_CLOCK_SKEW_S = env_int("FINOPS_INGEST_CLOCK_SKEW_S", 300)
FINOPS_RAW_RETENTION_MONTHS = env_int("FINOPS_RAW_RETENTION_MONTHS", 13)

# Fleet rollouts and proxy health
FLEET_STALE_AFTER_S = env_float("FLEET_STALE_AFTER_S", 30.0)
FLEET_UNREACHABLE_AFTER_S = env_float("FLEET_UNREACHABLE_AFTER_S", 120.0)
FLEET_CANARY_WINDOW_S = env_float("FLEET_CANARY_WINDOW_S", 3.0)
FLEET_PUSH_TIMEOUT_S = env_float("FLEET_PUSH_TIMEOUT_S", 5.0)
FLEET_PUSH_ATTEMPTS = env_int("FLEET_PUSH_ATTEMPTS", 3)
FLEET_PUSH_BACKOFF_S = env_float("FLEET_PUSH_BACKOFF_S", 0.5)

# Reverse proxies in front of us (IPs or CIDRs): only their X-Forwarded-For is believed (login throttle).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

# Proxy base URLs: the control plane sends the proxy token there, so plain http:// only to loopback, to the
# hosts (names, IPs or CIDRs) in FINOPS_HTTP_PROXY_HOSTS (e.g. compose names: proxy-a,proxy-b), or anywhere
# with FINOPS_ALLOW_HTTP_PROXIES=true (a private network you trust); https:// always (docs/security.md).
FINOPS_HTTP_PROXY_HOSTS = env_list("FINOPS_HTTP_PROXY_HOSTS", [])
FINOPS_ALLOW_HTTP_PROXIES = env_bool("FINOPS_ALLOW_HTTP_PROXIES", False)

# Alert webhooks: never to link-local/private/metadata addresses; loopback only where a test or DEBUG says so.
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", DEBUG or TESTING)

# Alerts (defaults; per-feature overrides live on the feature's alert settings)
ALERT_FALLBACK_THRESHOLD = env_str("ALERT_FALLBACK_THRESHOLD", "0.20")
ALERT_FALLBACK_WINDOW_MINUTES = env_int("ALERT_FALLBACK_WINDOW_MINUTES", 15)
ALERT_FALLBACK_MIN_REQUESTS = env_int("ALERT_FALLBACK_MIN_REQUESTS", 50)
ALERT_ANOMALY_BASELINE_HOURS = env_int("ALERT_ANOMALY_BASELINE_HOURS", 48)
ALERT_ANOMALY_K = env_str("ALERT_ANOMALY_K", "5")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
