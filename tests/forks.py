"""Fork this process while another thread holds a lock, and run a check in the child (POSIX ``os.fork`` only).

A lock held by another thread at the fork is held in the child by a thread the child does not have: without an
``os.register_at_fork`` hook that gives the child a fresh lock, the child's first ``with lock:`` waits forever.
The child's check probes the lock without blocking first, so a test of a lock left held fails instead of hanging."""

import os
import threading
import traceback
import warnings


def exit_code_of_fork_while_held(lock_of, check) -> int:
    """Fork while another thread holds ``lock_of()``; the child runs ``check()`` (true: success) and exits.

    :param lock_of: gives the lock (read again in the child: a fork hook may have replaced it).
    :param check: run in the child after the lock was found free.
    :returns: the child's exit code: 0 success, 1 the lock was still held in the child, 2 ``check`` was false,
        3 it raised.
    """
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock_of():
            held.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    try:
        with warnings.catch_warnings():  # Python 3.12+: "This process is multi-threaded, use of fork() may lead..."
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: one thread, never back into pytest
            code = 3
            try:
                lock = lock_of()
                if not lock.acquire(blocking=False):
                    code = 1
                else:
                    lock.release()
                    code = 0 if check() else 2
            except BaseException:  # noqa: BLE001 -- reported by the exit code, the traceback on stderr
                traceback.print_exc()
            finally:
                os._exit(code)
    finally:
        release.set()
        thread.join()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
