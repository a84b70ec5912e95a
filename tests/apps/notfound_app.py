"""/ answers "app root"; every other path 404 "app 404: <PATH_INFO>".
Behind [[static]] routes, so a path the front sends to the app cannot pass
for a served file."""


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app root"]
    body = ("app 404: %s" % path).encode("utf-8", "surrogateescape")
    start_response("404 Not Found", [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))])
    return [body]
