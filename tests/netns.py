"""A private network namespace with only loopback up, for tests that must not reach the network.

Ableton Link discovers peers by multicast on every interface that is up; in a private network
namespace loopback is the only one, so a test's Link traffic stays on the machine and no peer
from elsewhere can join. Used by ``tests/test_link.py`` (a child process) and
``benchmarks/bench_soak.py`` (the whole soak process).

Namespaces belong to a thread: :func:`private_network` moves the calling thread; the threads and
processes it starts afterwards inherit its namespace (``subprocess`` and ``multiprocessing``'s
``spawn`` and ``fork`` start methods, not ``forkserver``, whose server may predate it).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CLONE_NEWNET", "CLONE_NEWUSER", "network_namespace_id", "private_network", "scope"]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def network_namespace_id() -> str:
    """The calling thread's network namespace, e.g. ``net:[4026531840]``.

    Returns
    -------
    str
        The target of ``/proc/thread-self/ns/net``; equal in two threads or processes exactly
        when they share the namespace.
    """
    return os.readlink("/proc/thread-self/ns/net")


def private_network() -> str | None:
    """Move the calling thread into a new network namespace and bring loopback up there.

    Tries ``unshare(CLONE_NEWNET)`` (needs ``CAP_SYS_ADMIN``), then
    ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` (unprivileged user namespaces; only in a
    single-threaded process, and it cannot be undone).

    Returns
    -------
    str or None
        None once inside, otherwise why not (the thread then stays where it was, unless
        loopback could not be brought up).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    why = ""
    for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            break
        why = os.strerror(ctypes.get_errno())
    else:
        return f"cannot create a private network namespace (unshare: {why})"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = struct.pack("16sH22x", b"lo", 0)
            flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr))[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    except OSError as exc:
        return f"cannot bring up loopback in the private network namespace: {exc}"
    return None


@contextmanager
def scope() -> Iterator[str | None]:
    """:func:`private_network` for a block, then back to the previous namespace where possible.

    Yields
    ------
    str or None
        None inside a private namespace, otherwise why not (the block then runs where the
        thread was).

    Notes
    -----
    Returning needs ``setns`` on the namespace the thread came from, which a thread that had
    to create a user namespace is no longer allowed to do: it then stays in the private one
    (loopback only). Threads and processes started in the block keep the private namespace.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        before = network_namespace_id()
        why = private_network()
        try:
            yield why
        finally:
            if network_namespace_id() != before and libc.setns(fd, CLONE_NEWNET) != 0:
                err = os.strerror(ctypes.get_errno())
                warnings.warn(
                    f"staying in the private network namespace (setns: {err})",
                    RuntimeWarning,
                    stacklevel=3,
                )
    finally:
        os.close(fd)
