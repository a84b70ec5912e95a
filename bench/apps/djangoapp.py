"""A complete Django project in one file: settings, URLconf, a JSON view.

Minimal but realistic: DEBUG off, the two middlewares nearly every project
keeps (security, common), no database, no sessions/auth.
"""

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="edge-bench-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
        USE_TZ=True,
    )

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def json_view(request):
    return JsonResponse({"message": "Hello, World!"})


urlpatterns = [path("", json_view), path("json", json_view)]

app = get_wsgi_application()
