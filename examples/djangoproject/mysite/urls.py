from django.contrib import admin
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def hello(request):
    return JsonResponse({"message": "Hello from Django on edge", "method": request.method,
                         "path": request.path})


@csrf_exempt
def echo(request):
    body = request.body
    return JsonResponse({"length": len(body), "body": body.decode("utf-8", "replace"),
                         "content_type": request.content_type})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/hello", hello),
    path("api/echo", echo),
]
