"""Stop training between steps, not inside one, when SIGINT or SIGTERM arrives.

Inside :func:`deferred_signals` the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's
pre-emption) is only recorded; the training loop asks for it after each step, writes a
checkpoint and raises :class:`Interrupted`. A second signal of the same kind acts at
once (the usual ``KeyboardInterrupt`` or termination), for a user who will not wait.
"""

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped at a step boundary on a signal; ``signum`` says which.

    A ``KeyboardInterrupt``, so ``except Exception`` does not swallow it. ``128 +
    signum`` is the conventional exit status of a program stopped this way.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@contextmanager
def deferred_signals() -> Iterator[Callable[[], Optional[int]]]:
    """Record SIGINT/SIGTERM instead of acting; yield ``pending() -> signum or None``.

    Outside the main thread Python cannot install handlers; there ``pending`` is
    always ``None`` and signals act as usual.
    """
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    # getsignal is None for a handler installed outside Python: restore the default.
    previous = {signum: signal.getsignal(signum) or signal.SIG_DFL for signum in SIGNALS}

    def record(signum, frame):
        if signum in received:  # asked twice: stop now
            handler = previous[signum]
            signal.signal(signum, handler)
            if callable(handler):  # Python's own SIGINT handler raises KeyboardInterrupt here
                handler(signum, frame)
            else:  # SIG_DFL: the process ends as the signal's default action says
                signal.raise_signal(signum)
            return
        received.append(signum)

    for signum in SIGNALS:
        signal.signal(signum, record)
    try:
        yield lambda: received[0] if received else None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
