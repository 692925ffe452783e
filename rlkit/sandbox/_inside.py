"""Runs inside the sandbox (passed to the interpreter with `-c`): set rlimits, then exec.

argv: cpu_s address_space_bytes processes file_size_bytes open_files code.  The limits are set
here, after bubblewrap created the user namespace, because RLIMIT_NPROC set there counts the
processes of this sandbox only (set on bwrap itself it would count every process of the uid on
the host).  Then the interpreter replaces itself with `python -I -c code`, so the program runs
exactly as `python3 -c` would run it, with these limits inherited.  Standard library only.
"""

import os
import resource
import sys


def _limit(which: int, value: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (value, value if hard is None else hard))


def main() -> None:
    cpu_s, address_space, processes, file_size, open_files = map(int, sys.argv[1:6])
    code = sys.argv[6]
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)  # SIGXCPU first, SIGKILL a second later
    _limit(resource.RLIMIT_AS, address_space)
    _limit(resource.RLIMIT_NPROC, processes)
    _limit(resource.RLIMIT_FSIZE, file_size)
    _limit(resource.RLIMIT_NOFILE, open_files)
    os.execv(sys.executable, [sys.executable, "-I", "-c", code])


main()
