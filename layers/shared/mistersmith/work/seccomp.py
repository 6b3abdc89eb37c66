"""The seccomp filter every sandboxed child installs before it runs anything of the task's.

Hand-written classic BPF (no libseccomp: the image need not carry it, and ctypes over it would
add a binding to maintain), built once in the parent and installed by the child with two
prctl calls after `PR_SET_NO_NEW_PRIVS`. It checks the architecture field first: a call made
through another ABI (i386's `int 0x80`, x32's numbers) kills the process, so the table below
cannot be bypassed. Refused with EPERM: sockets of any family but AF_UNIX and AF_NETLINK (so no
IPv4, IPv6 or packet sockets, unless the network is allowed), io_uring (it can open sockets
itself), namespaces (clone with a CLONE_NEW* flag, unshare, setns; clone3 answers ENOSYS so
that libc falls back to clone, whose flags can be read), and the calls a build never needs:
ptrace, mount and its kin, keyrings, bpf, perf_event_open, kernel modules, kexec, swap, reboot,
clocks and the like.

Tested on x86_64 only; the aarch64 numbers come from the kernel's generic table.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
from dataclasses import dataclass, field

# linux/audit.h
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000
# linux/filter.h opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
# linux/seccomp.h
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
# struct seccomp_data: nr, arch, instruction_pointer, args[6] (the low half of args[0] on little endian)
_NR, _ARCH, _ARG0 = 0, 4, 16
_AF_UNIX, _AF_NETLINK = 1, 16
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NAMESPACES = 0x7E020000
# Calls compared one by one at the end of the filter's binary search (see _search).
_LEAF = 3

# name, x86_64, aarch64: from asm/unistd_64.h and asm-generic/unistd.h. socket, clone and clone3
# have rules of their own; every other call listed is refused.
_TABLE = """
socket 41 198
clone 56 220
clone3 435 435
ptrace 101 117
mount 165 40
umount2 166 39
keyctl 250 219
add_key 248 217
request_key 249 218
bpf 321 280
perf_event_open 298 241
io_uring_setup 425 425
io_uring_enter 426 426
io_uring_register 427 427
unshare 272 97
setns 308 268
pivot_root 155 41
chroot 161 51
kexec_load 246 104
kexec_file_load 320 294
init_module 175 105
finit_module 313 273
delete_module 176 106
process_vm_readv 310 270
process_vm_writev 311 271
userfaultfd 323 282
swapon 167 224
swapoff 168 225
reboot 169 142
acct 163 89
open_by_handle_at 304 265
name_to_handle_at 303 264
fsopen 430 430
fsconfig 431 431
fsmount 432 432
move_mount 429 429
open_tree 428 428
fspick 433 433
mount_setattr 442 442
quotactl 179 60
syslog 103 116
pidfd_getfd 438 438
kcmp 312 272
lookup_dcookie 212 18
settimeofday 164 170
clock_settime 227 112
"""
_ROWS = [line.split() for line in _TABLE.strip().splitlines()]
_NUMBERS = {
    machine: {row[0]: int(row[column]) for row in _ROWS}
    for column, machine in ((1, "x86_64"), (2, "aarch64"))
}
_REFUSED_NAMES = tuple(row[0] for row in _ROWS if row[0] not in ("socket", "clone", "clone3"))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class SeccompFilter:
    """A filter ready to install: the program and the struct that points at it, made in the parent
    so that the child (between fork and exec) only makes two system calls."""

    program: bytes
    _buffer: ctypes.Array[ctypes.c_char] = field(repr=False)
    _fprog: _SockFprog = field(repr=False)

    def install(self) -> None:
        """Sets no_new_privs, then the filter, on the calling thread; OSError if either fails."""
        libc = _LIBC
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")


_LIBC = ctypes.CDLL(None, use_errno=True)


def build_filter(allow_network: bool = False, machine: str | None = None) -> SeccompFilter:
    """The filter for this machine's architecture; ValueError on one it has no table for."""
    machine = machine or platform.machine()
    if machine not in _NUMBERS:
        raise ValueError(f"no seccomp table for {machine}; the sandbox supports x86_64 and aarch64")
    program = _assemble(machine, allow_network)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    return SeccompFilter(program, buffer, fprog)


def _assemble(machine: str, allow_network: bool) -> bytes:
    numbers = _NUMBERS[machine]
    refuse = _RET_ERRNO | errno.EPERM
    # (code, jump-if-true label, jump-if-false label, k); labels resolve to relative offsets below.
    code: list[tuple[int, str | None, str | None, int] | str] = [
        (_LD_W_ABS, None, None, _ARCH),
        (_JEQ_K, None, "kill", _AUDIT_ARCH[machine]),
        (_LD_W_ABS, None, None, _NR),
    ]
    if machine == "x86_64":
        code.append((_JGE_K, "kill", None, _X32_SYSCALL_BIT))
    targets = {numbers[name]: "refuse" for name in _REFUSED_NAMES}
    targets |= {numbers["clone3"]: "enosys", numbers["clone"]: "clone"}
    if not allow_network:
        targets[numbers["socket"]] = "socket"
    code += _search(sorted(targets.items()), "allow")
    code += [
        "clone",
        (_LD_W_ABS, None, None, _ARG0),
        (_JSET_K, "refuse", "allow", _CLONE_NAMESPACES),
        "socket",
        (_LD_W_ABS, None, None, _ARG0),
        (_JEQ_K, "allow", None, _AF_UNIX),
        (_JEQ_K, "allow", "refuse", _AF_NETLINK),
        "allow",
        (_RET_K, None, None, _RET_ALLOW),
        "refuse",
        (_RET_K, None, None, refuse),
        "enosys",
        (_RET_K, None, None, _RET_ERRNO | errno.ENOSYS),
        "kill",
        (_RET_K, None, None, _RET_KILL_PROCESS),
    ]
    labels: dict[str, int] = {}
    instructions: list[tuple[int, str | None, str | None, int]] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)
    program = bytearray()
    for index, (opcode, when_true, when_false, k) in enumerate(instructions):
        jt = labels[when_true] - index - 1 if when_true else 0
        jf = labels[when_false] - index - 1 if when_false else 0
        program += struct.pack("=HBBI", opcode, jt, jf, k)
    return bytes(program)


def _search(
    targets: list[tuple[int, str]], otherwise: str
) -> list[tuple[int, str | None, str | None, int] | str]:
    """A binary search of the loaded syscall number over `targets` ((number, label), sorted): each
    call takes about log2(n) + _LEAF steps, not n. The kernel runs the filter for every number
    when it is installed (to cache the calls it always allows), so its length is a cost of each run."""
    if len(targets) <= _LEAF:
        *tests, (last, label) = targets
        return [
            *((_JEQ_K, target, None, number) for number, target in tests),
            (_JEQ_K, label, otherwise, last),
        ]
    middle = len(targets) // 2
    upper = f"at-least-{targets[middle][0]}"
    return [
        (_JGE_K, upper, None, targets[middle][0]),
        *_search(targets[:middle], otherwise),
        upper,
        *_search(targets[middle:], otherwise),
    ]
