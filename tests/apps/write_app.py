"""Uses the legacy write() callable, then returns an iterable: the client
must get the written bytes first, then the iterable's, in order."""


def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"write-1;")
    write(b"")
    write(b"write-2;")
    return [b"iter-1;", b"", b"iter-2;"]
