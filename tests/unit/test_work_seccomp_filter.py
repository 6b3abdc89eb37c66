"""The seccomp program itself, run by a classic-BPF interpreter for every system call number of
each architecture: its decisions are the table's, whatever shape the program takes (the attack
tests check a few calls in a real child, on x86_64 only)."""

from __future__ import annotations

import errno
import struct

import pytest

from mistersmith.work import seccomp
from mistersmith.work.seccomp import build_filter

pytestmark = pytest.mark.unit

ALLOW, KILL = 0x7FFF0000, 0x80000000
EPERM, ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Far past the highest number either table has: every number there falls through to ALLOW.
NUMBERS = range(1024)
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17


def run(program: bytes, nr: int, arch: int, arg0: int = 0) -> tuple[int, int]:
    """What the program returns for the call, and how many instructions it took; every jump
    must land inside the program, forwards (as the kernel's checker demands)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    instructions = [struct.unpack_from("=HBBI", program, offset) for offset in range(0, len(program), 8)]
    accumulator, pc, steps = 0, 0, 0
    while True:
        code, jt, jf, k = instructions[pc]
        steps += 1
        if code == 0x06:  # ret k
            return k, steps
        if code == 0x20:  # ld [k]
            (accumulator,) = struct.unpack_from("=I", data, k)
            pc += 1
            continue
        taken = {0x15: accumulator == k, 0x35: accumulator >= k, 0x45: accumulator & k != 0}[code]
        pc += 1 + (jt if taken else jf)
        assert pc < len(instructions)


def expected(machine: str, allow_network: bool, nr: int, arg0: int) -> int:
    numbers = seccomp._NUMBERS[machine]
    if nr in {numbers[name] for name in seccomp._REFUSED_NAMES}:
        return EPERM
    if nr == numbers["clone3"]:
        return ENOSYS
    if nr == numbers["clone"] and arg0 & (CLONE_NEWUSER | CLONE_NEWNET):
        return EPERM
    if nr == numbers["socket"] and not allow_network and arg0 not in (AF_UNIX, AF_NETLINK):
        return EPERM
    return ALLOW


@pytest.mark.parametrize("allow_network", [False, True], ids=["no-network", "network"])
@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_call_gets_the_table_s_decision_within_a_few_steps(machine, allow_network):
    program = build_filter(allow_network, machine).program
    longest = 0
    for nr in NUMBERS:
        for arg0 in (
            0,
            SIGCHLD,
            CLONE_NEWUSER | SIGCHLD,
            CLONE_NEWNET,
            AF_UNIX,
            AF_INET,
            AF_INET6,
            AF_NETLINK,
            AF_PACKET,
        ):
            decision, steps = run(program, nr, ARCH[machine], arg0)
            assert decision == expected(machine, allow_network, nr, arg0), (nr, arg0)
            longest = max(longest, steps)
    # A binary search, not a list: installing it, the kernel runs it once for each number.
    assert longest <= 16


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_another_architecture_s_calls_are_killed(machine):
    program = build_filter(False, machine).program
    other = next(arch for name, arch in ARCH.items() if name != machine)
    assert {run(program, nr, other)[0] for nr in NUMBERS} == {KILL}
    assert {run(program, nr, 0x40000003)[0] for nr in NUMBERS} == {KILL}  # i386


def test_x32_numbers_are_killed():
    program = build_filter(False, "x86_64").program
    assert {run(program, 0x40000000 | nr, ARCH["x86_64"])[0] for nr in NUMBERS} == {KILL}
