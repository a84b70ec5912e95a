"""An async Django view behind django.core.asgi.get_asgi_application()
(tests/asgi.rs). Settings: asgi_django_settings; this module is also the
URLconf.

  GET  /hello/<name>?q=   JSON from an `async def` view: the name, q, the
                          method, whether a running asyncio loop ran the
                          view, after an `await asyncio.sleep(0.01)`
  POST /echo              JSON {"len", "body"} of the request body (async view)
"""
import asyncio
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_django_settings")

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def hello(request, name):
    await asyncio.sleep(0.01)
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    return JsonResponse({
        "hello": name,
        "q": request.GET.get("q"),
        "method": request.method,
        "in_loop": in_loop,
        "pid": os.getpid(),
    })


async def echo(request):
    body = request.body
    return JsonResponse({"len": len(body), "body": body.decode("utf-8", "replace")})


urlpatterns = [
    path("hello/<str:name>", hello),
    path("echo", echo),
]

application = get_asgi_application()
