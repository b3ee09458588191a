"""smsdesk settings: everything comes from the environment (or a .env file)."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from dotenv import load_dotenv

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent

# A .env in the working directory is read like the sample's env.example;
# real environment variables win over it.
load_dotenv(Path.cwd() / ".env", override=False)


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


SMSDESK_ENV = env("SMSDESK_ENV", "demo").lower()
PRODUCTION = SMSDESK_ENV == "production"

# Outside production a fixed key keeps demo sessions valid across restarts;
# in production the system check refuses to start without a real one.
SMSDESK_SECRET_KEY_SET = bool(env("SMSDESK_SECRET_KEY"))
SECRET_KEY = env("SMSDESK_SECRET_KEY") or ("" if PRODUCTION else "smsdesk-demo-key-not-secret")
DEBUG = env_bool("SMSDESK_DEBUG")

SMSDESK_PUBLIC_URL = env("SMSDESK_PUBLIC_URL").rstrip("/")
_public_host = urlsplit(SMSDESK_PUBLIC_URL).hostname if SMSDESK_PUBLIC_URL else None
ALLOWED_HOSTS = env_list("SMSDESK_ALLOWED_HOSTS") or (
    [_public_host, "localhost", "127.0.0.1"] if PRODUCTION and _public_host else ["*"]
)
if SMSDESK_PUBLIC_URL:
    CSRF_TRUSTED_ORIGINS = [SMSDESK_PUBLIC_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "smsdesk.sms",
    "smsdesk.desk",
    "smsdesk.live",
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

ROOT_URLCONF = "smsdesk.urls"
WSGI_APPLICATION = "smsdesk.wsgi.application"

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
                "smsdesk.desk.context.desk",
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL", "sqlite:///smsdesk.sqlite3")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers work while the worker writes; IMMEDIATE takes the write
    # lock at BEGIN so two writers queue instead of failing with "database is
    # locked" when a read transaction tries to upgrade. smsdesk.db.sqlite3 is
    # Django's backend with the writers queued on a lock file.
    # A 16 MiB page cache per connection (SQLite's default is 2 MiB) holds
    # the search index pages an agent's searches touch: at 100k tickets a
    # search near the index's threshold took 17-19 CPU-ms with 2 MiB, 11-14
    # with 16 MiB and 11-12 with 64 MiB, which only costs more memory (up to
    # 64 MiB for each of a process's connections as it fills).
    DATABASES["default"]["ENGINE"] = "smsdesk.db.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;"
        ),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # Tests use a file, not Django's in-memory default, so that threads and
    # processes in the concurrency tests share one database the real way.
    DATABASES["default"]["TEST"] = {
        "NAME": env("SMSDESK_TEST_SQLITE")
        or str(Path(tempfile.gettempdir()) / "smsdesk-test.sqlite3")
    }
# No CONN_HEALTH_CHECKS: it costs a SELECT 1 round trip at the start of every
# request, doubling a webhook's queries. A connection that died (database
# restart) fails one request with a 500, which the provider retries, and
# Django closes it at the end of that request.

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "desk:inbox"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
TIME_ZONE = env("SMSDESK_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# Only needed for `smsdesk collectstatic`; WhiteNoise serves from the apps otherwise.
STATIC_ROOT = env("SMSDESK_STATIC_ROOT") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app folders so `smsdesk serve` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION and SMSDESK_PUBLIC_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SMSDESK_BEHIND_PROXY") else None
)

# Webhook bodies are a few hundred bytes; anything near this is not an SMS.
SMSDESK_WEBHOOK_MAX_BYTES = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# Providers. Without an access key the built-in simulator stands in.
MESSAGEBIRD_ACCESS_KEY = env("MESSAGEBIRD_ACCESS_KEY")
MESSAGEBIRD_ORIGINATOR = env("MESSAGEBIRD_ORIGINATOR")
MESSAGEBIRD_SIGNING_KEY = env("MESSAGEBIRD_SIGNING_KEY")
MESSAGEBIRD_API_URL = env("MESSAGEBIRD_API_URL", "https://rest.messagebird.com").rstrip("/")
SMSDESK_PROVIDER = "messagebird" if MESSAGEBIRD_ACCESS_KEY else "simulator"
SMSDESK_WEBHOOK_TOKEN = env("SMSDESK_WEBHOOK_TOKEN")

SMSDESK_CONFIRMATION_TEXT = env(
    "SMSDESK_CONFIRMATION_TEXT",
    "Thanks for contacting customer support! Your ticket ID is {ref}.",
)
SMSDESK_DEFAULT_REGION = env("SMSDESK_DEFAULT_REGION").upper() or None
# A text after its ticket was closed reopens it within this window, else opens a new one.
SMSDESK_REOPEN_WINDOW = timedelta(days=float(env("SMSDESK_REOPEN_DAYS", "7")))
# Outside these hours (e.g. "Mon-Fri 09:00-17:30; Sat 10:00-14:00") a new
# ticket's confirmation carries the out-of-hours text; empty: always open.
SMSDESK_BUSINESS_HOURS = env("SMSDESK_BUSINESS_HOURS")
SMSDESK_BUSINESS_TIME_ZONE = env("SMSDESK_BUSINESS_TIME_ZONE", TIME_ZONE)
SMSDESK_OUT_OF_HOURS_TEXT = env(
    "SMSDESK_OUT_OF_HOURS_TEXT",
    "We are closed now and will reply from {next_open}.",
)
# Answers to STOP, START and HELP texts; an empty value sends nothing.
SMSDESK_OPT_OUT_TEXT = env(
    "SMSDESK_OPT_OUT_TEXT",
    "You will get no more texts from us. Reply START to undo.",
)
SMSDESK_OPT_IN_TEXT = env(
    "SMSDESK_OPT_IN_TEXT", "You will get our texts again. Reply STOP to opt out."
)
SMSDESK_HELP_TEXT = env(
    "SMSDESK_HELP_TEXT",
    "This is our customer support line: text your question and an agent will reply. "
    "Reply STOP to opt out.",
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "smsdesk": {"handlers": ["console"], "level": env("SMSDESK_LOG_LEVEL", "INFO")},
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
