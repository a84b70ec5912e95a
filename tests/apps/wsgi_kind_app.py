"""A plain WSGI function answering "wsgi" (interface = "auto" must pick WSGI)."""


def app(environ, start_response):
    body = ("wsgi %s" % environ["REQUEST_METHOD"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
