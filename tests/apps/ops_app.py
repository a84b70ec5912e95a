"""For the operations tests (tests/operations.rs). Every answer is plain
text, space-separated key=value tokens, always with pid=<worker pid>.

  /sleep?s=F   prints "ops_app: sleep begin pid=P" to stderr (flushed),
               sleeps F seconds inside hang_here(), answers slept=F
  /env         multithread=<environ['wsgi.multithread']>
  /importpid   import_pid=<pid of the process that imported this module>,
               after sleeping ?s=F seconds (default 0)
  /orphan      starts `sh -c "sleep S & exit 0"` (S from ?s=, default 1.5),
               waits for sh: the sleep is orphaned; answers orphan=<sh pid>
  anything else: just pid=P
"""
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs

IMPORT_PID = os.getpid()


def hang_here(seconds):
    time.sleep(seconds)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    words = []
    if path == "/sleep":
        seconds = qs.get("s", ["1"])[0]
        print("ops_app: sleep begin pid=%d" % os.getpid(), file=sys.stderr, flush=True)
        hang_here(float(seconds))
        words.append("slept=%s" % seconds)
    elif path == "/env":
        words.append("multithread=%s" % environ.get("wsgi.multithread"))
    elif path == "/importpid":
        time.sleep(float(qs.get("s", ["0"])[0]))
        words.append("import_pid=%d" % IMPORT_PID)
    elif path == "/orphan":
        seconds = qs.get("s", ["1.5"])[0]
        p = subprocess.Popen(["sh", "-c", "sleep %s & exit 0" % seconds])
        p.wait()
        words.append("orphan=%d" % p.pid)
    words.append("pid=%d" % os.getpid())
    body = " ".join(words).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
