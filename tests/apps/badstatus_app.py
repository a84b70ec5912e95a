"""Invalid status lines: /s1 "20 OK" (two digits), /s2 "abc", /s3 "" ,
/s4 "200OK"; anything else answers "ok <pid>"."""
import os

BAD = {"/s1": "20 OK", "/s2": "abc", "/s3": "", "/s4": "2000 OK"}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path in BAD:
        start_response(BAD[path], [("Content-Type", "text/plain")])
        return [b"should never reach the client\n"]
    body = ("ok %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
