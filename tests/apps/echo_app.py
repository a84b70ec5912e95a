"""Echoes the request body back verbatim (application/octet-stream), and
the request method and path in X-Echo-* headers."""


def app(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(data))),
                              ("X-Echo-Method", environ["REQUEST_METHOD"]),
                              ("X-Echo-Path", environ.get("PATH_INFO", ""))])
    return [data]
