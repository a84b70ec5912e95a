"""A generator body: ?n=N numbered lines (default 10), ?sleep=S seconds
between them (default 0.02)."""
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(qs.get("n", ["10"])[0])
    pause = float(qs.get("sleep", ["0.02"])[0])
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        for i in range(n):
            if i:
                time.sleep(pause)
            yield ("chunk %d\n" % i).encode()

    return body()
