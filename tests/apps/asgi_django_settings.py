"""Minimal Django settings for asgi_django_app (tests/asgi.rs)."""
SECRET_KEY = "edge-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "asgi_django_app"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
