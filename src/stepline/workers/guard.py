"""Run a shell step's command on a cluster worker, and stop it when that worker dies.

The engines stop an attempt by killing its worker process (Ray's force-cancel, a dask
worker's restart), which runs no cleanup, so a command started by the worker itself would
live on with everything it started. The worker starts this script instead (``python -I -S``:
no site, no stepline import), which asks the kernel for SIGTERM when the worker dies, starts
the command in a process group of its own, and on SIGTERM stops that whole group: SIGTERM,
then SIGKILL after a grace period. It ends as the command ended (its exit code, or the same
signal), and a command that cannot start ends it with 127 or 126 and one line on stderr.

    python -I -S guard.py <worker pid> <argv...>
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

GRACE_S = 2.0
MARK = "stepline: "  # begins the one line a failed start writes: "stepline: cannot run X: ..."


def main() -> None:
    worker, argv = int(sys.argv[1]), sys.argv[2:]
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != worker:  # it died before the request took hold
        sys.exit(128 + signal.SIGTERM)
    try:
        child = subprocess.Popen(argv, start_new_session=True)
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        said = f"{exc.filename or argv[0]} not found" if missing else exc.strerror or str(exc)
        print(f"{MARK}cannot run {argv[0]}: {said}", file=sys.stderr)
        sys.exit(127 if missing else 126)

    def stop(signum: int, frame: object) -> None:
        for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    code = child.wait()
    if code < 0:  # end by the same signal, so the worker reports it as the command's
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
