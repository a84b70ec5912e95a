"""/boom raises before start_response; /boom-late raises in the iterable
before the first chunk; anything else answers "ok <pid>"."""
import os


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/boom":
        raise RuntimeError("boom-marker-7f3a9c: raised by exc_app")
    if path == "/boom-late":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            raise ValueError("late-boom-marker-51d2: raised by exc_app iterable")
            yield b"never"

        return body()
    body = ("ok %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
