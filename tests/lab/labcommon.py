"""Process helpers shared by the lab scripts (postfix_lab.py, exim_lab.py).
Python 3.11 standard library only."""
from __future__ import annotations

import os
import socket
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], T], timeout: float, what: str,
               die: Callable[[str], object], interval: float = 0.2) -> T:
    """Calls `pred` every `interval` seconds until it returns a true value,
    and returns that; calls `die` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        val = pred()
        if val:
            return val
        if time.monotonic() > deadline:
            die(f"timed out after {timeout:g}s waiting for {what}")
            raise SystemExit(1)
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0): treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
