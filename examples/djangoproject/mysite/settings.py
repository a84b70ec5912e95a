"""Settings for the example Django project served by edge.

Run it with edge (see conf/ and README):

    [app]
    module = "mysite.wsgi:application"
    pythonpath = ["../examples/djangoproject"]
    venv = "/path/to/a/venv/with/django"

    [[static]]                      # the admin's CSS/JS, served by edge, not Django
    url = "/static/admin/"
    dir = "/path/to/a/venv/with/django/lib/python3.X/site-packages/django/contrib/admin/static/admin"

or collect static files with `python manage.py collectstatic` into STATIC_ROOT
and point one `[[static]] url = "/static/"` at that folder.
"""
import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# An example only: real deployments read the key from the environment.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY",
    "example-only-not-secret-3c1f0e9a7b5d4c2e8f6a1b0d9c7e5f3a",
)
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mysite.wsgi.application"

# A throwaway SQLite file: the pages this example serves need no tables
# (sessions live in signed cookies), so no migration is required to run it.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DJANGO_DB_PATH", os.path.join(tempfile.gettempdir(), "edge-example-django.sqlite3")
        ),
    }
}

# Sessions in signed cookies: the admin login page works without a database.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

AUTH_PASSWORD_VALIDATORS = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# edge serves these URLs from disk through a [[static]] route.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
