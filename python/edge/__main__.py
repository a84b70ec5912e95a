"""`edge ...` (the console script) and `python -m edge ...`.

Imports nothing but edge, starts no thread: the process becomes edge's
arbiter and forks the workers and the front from here.
"""

import sys

from edge._edge import main as _run


def main():
    # "edge" as the program name, whichever way we were started, so usage
    # and errors read like the binary's.
    return _run(["edge", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
