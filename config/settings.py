"""Arbiter settings: read once, here, from environment variables only.

Embedded default (nothing to install): SQLite in WAL mode, a filesystem Celery broker and an
in-memory channel layer. At scale: set DATABASE_URL (PostgreSQL) and REDIS_URL.
"""

import os
import tempfile
from pathlib import Path

import dj_database_url

from config.secret_key import secret_key_resolve

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("ARBITER_DATA_DIR", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)
(DATA_DIR / "static").mkdir(exist_ok=True)


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# No network at run time beyond the configured services: models load from local paths only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEBUG = _bool("ARBITER_DEBUG", False)
# No built-in key: ARBITER_SECRET_KEY, else this installation's key file (DATA_DIR/secret_key,
# made by `make run`); otherwise refuse to start, except in local debug (config/secret_key.py).
SECRET_KEY = secret_key_resolve(env_key=os.environ.get("ARBITER_SECRET_KEY", ""), data_dir=DATA_DIR, debug=DEBUG)
# Earlier keys, still accepted for sessions and signed links after a rotation (comma-separated).
SECRET_KEY_FALLBACKS = [k.strip() for k in os.environ.get("ARBITER_SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
# Annotator pseudonyms are keyed by a key derived from this one, or from SECRET_KEY when unset:
# set it to the old key when rotating SECRET_KEY to keep pseudonyms (annotation/pseudonyms.py).
ARBITER_PSEUDONYM_KEY = os.environ.get("ARBITER_PSEUDONYM_KEY", "").strip()

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ARBITER_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("ARBITER_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "annotation",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "annotation.context_processors.roles",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'arbiter.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Opening a connection per request costs more than most requests do. Under ASGI, Django
    # wants a pool rather than persistent connections.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(os.environ.get("ARBITER_DB_POOL_SIZE", "20")),
        "timeout": 30,
    }
    # Prepared statements for the serving hot path's server-side-binding cursor (Django's own
    # cursors bind on the client and never prepare). ARBITER_DB_PREPARE=0 turns them off, e.g.
    # behind a pooler that cannot keep them.
    if _bool("ARBITER_DB_PREPARE", True):
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock at the
        # start of every transaction, which serializes the write path (no lock upgrades that
        # fail with "database is locked" half-way through a service).
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests use a file, as production does, so that threads and processes share one database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("ARBITER_TEST_SQLITE", str(Path(tempfile.gettempdir()) / f"arbiter-test-{os.getpid()}.sqlite3"))
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "dist"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = DATA_DIR / "media"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the judging page reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Token clients' `next` and `submit` skip Django's request machinery (annotation.http.hotpath), in a
# pool of this many threads per server process.
ARBITER_HOT_PATH = _bool("ARBITER_HOT_PATH", True)
ARBITER_HOT_PATH_THREADS = int(os.environ.get("ARBITER_HOT_PATH_THREADS", "4"))

# Largest upload accepted by the import form and API (bytes).
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
ARBITER_IMPORT_MAX_BYTES = int(os.environ.get("ARBITER_IMPORT_MAX_BYTES", 200 * 1024 * 1024))
# Largest message of a conversation and largest reply an import accepts (UTF-8 bytes each).
ARBITER_IMPORT_MAX_MESSAGE_BYTES = int(os.environ.get("ARBITER_IMPORT_MAX_MESSAGE_BYTES", 100_000))
ARBITER_IMPORT_MAX_REPLY_BYTES = int(os.environ.get("ARBITER_IMPORT_MAX_REPLY_BYTES", 100_000))

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous API call gets 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: every view states its own permission classes.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "annotation.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "annotation.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Arbiter API",
    "DESCRIPTION": "Judging, campaigns and imports. Session auth (with CSRF) in the browser; "
    "`Authorization: Token <key>` for scripts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "CampaignStatusEnum": "annotation.models.Campaign.Status",
        "CampaignKindEnum": "annotation.models.Campaign.Kind",
        "DatasetStatusEnum": "annotation.models.Dataset.Status",
        "TrainingRunKindEnum": "training.models.TrainingRun.Kind",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
        "TrainingRuleKindEnum": "training.models.TrainingRule.Kind",
        "DatasetMethodEnum": "annotation.models.Dataset.Method",
    },
}

# --- Channels and Celery ----------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_FOLDER = DATA_DIR / "broker"
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = _bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.tasks.*": {"queue": "training"}}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ARBITER_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
CELERY_BEAT_SCHEDULE = {
    "expire-leases": {"task": "annotation.expire_leases", "schedule": 60.0},
    # A run whose worker died (kill -9, OOM, lost machine) stops sending heartbeats.
    "recover-stale-training-runs": {"task": "training.recover_stale_runs", "schedule": 60.0},
}

# --- Training ---------------------------------------------------------------------------------
# Base models load only from folders under these roots (os.pathsep-separated), never from a hub.
ARBITER_MODEL_ROOTS = [
    Path(p) for p in os.environ.get("ARBITER_MODEL_ROOTS", str(DATA_DIR / "models")).split(os.pathsep) if p.strip()
]
# Each run writes its checkpoints and final model under <ARBITER_TRAINING_DIR>/run-<id>/.
ARBITER_TRAINING_DIR = Path(os.environ.get("ARBITER_TRAINING_DIR", DATA_DIR / "training"))
# A running run's worker writes a heartbeat this often; one silent for ARBITER_TRAINING_STALE_SECONDS
# is marked failed (resumable), and requeued up to ARBITER_TRAINING_AUTO_RESUME times.
ARBITER_TRAINING_HEARTBEAT_SECONDS = float(os.environ.get("ARBITER_TRAINING_HEARTBEAT_SECONDS", "10"))
ARBITER_TRAINING_STALE_SECONDS = float(os.environ.get("ARBITER_TRAINING_STALE_SECONDS", "120"))
ARBITER_TRAINING_AUTO_RESUME = int(os.environ.get("ARBITER_TRAINING_AUTO_RESUME", "0"))
# A running run reads its cancel flag at most this often (seconds; 0 reads it after every step).
ARBITER_TRAINING_CANCEL_POLL_SECONDS = float(os.environ.get("ARBITER_TRAINING_CANCEL_POLL_SECONDS", "1"))
# "auto": runs with gpus > 1 go through `accelerate launch`; "accelerate": every run does.
ARBITER_TRAINING_LAUNCHER = os.environ.get("ARBITER_TRAINING_LAUNCHER", "auto")
