"""training/device.py: glibc keeping freed memory on the CPU (`keep_freed_memory`). Its speed
effect is measured in bench/README.md, never here."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest

import nerfcli.training.device as device_module
from nerfcli.training.device import keep_freed_memory, select_device


def glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


FREED_BLOCK_CHECK = """
import ctypes, os
from nerfcli.training.device import keep_freed_memory

def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

assert keep_freed_memory() and keep_freed_memory()  # once a process; again: still True
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 256 << 20
block = libc.malloc(size)
assert block
ctypes.memset(block, 1, size)  # the pages are resident now
before = resident_bytes()
libc.free(block)
print(before, resident_bytes())
assert resident_bytes() > before - size // 2  # not handed back to the system
"""


@pytest.mark.skipif(not glibc(), reason="glibc on Linux only")
def test_freed_memory_stays_in_the_process():
    """After keep_freed_memory a freed 256 MiB block stays resident for the next allocation
    (glibc's default would have given it its own mmap and unmapped it on free). In a fresh
    process: the suite's own earlier tests leave this one with threads and arenas (viewer,
    render pools) that made the in-process version fail in some orders."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", FREED_BLOCK_CHECK], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # and without it glibc does hand the block back (the check above can fail)
    plain = FREED_BLOCK_CHECK.replace("assert keep_freed_memory() and keep_freed_memory()", "")
    done = subprocess.run([sys.executable, "-c", plain], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "AssertionError" in done.stderr


def test_no_op_off_linux_and_when_the_environment_decides(monkeypatch):
    monkeypatch.setattr(device_module, "_kept", False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert keep_freed_memory() is False  # the user's own setting wins


def test_select_device_cpu_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(device_module, "keep_freed_memory", lambda: calls.append(1) or True)
    assert select_device("cpu").type == "cpu"
    assert calls == [1]
