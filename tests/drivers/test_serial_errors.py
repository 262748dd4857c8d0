"""Serial ports that cannot be used give one DeviceError naming the real cause, never a
traceback: refused settings, missing node, directory, not a terminal, busy, denied."""

from __future__ import annotations

import asyncio
import errno
import os
import pty
import select
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from drivers.base import MeterSpec, open_meter
from drivers.serialport import port_error
from ledger.errors import DeviceError
from meterchain.cli import main


@pytest.fixture
def pty_path() -> Iterator[str]:
    """The slave path of a fresh pseudo-terminal (ptys refuse parity-only changes)."""
    master, slave = pty.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


async def read_error(port: str, **fields: object) -> DeviceError:
    m = open_meter(MeterSpec("m", "modbus-rtu", port=port, profile="eastron-sdm120",
                             timeout_s=0.3, **fields))  # type: ignore[arg-type]
    try:
        with pytest.raises(DeviceError) as err:
            await m.read(1)
    finally:
        await m.close()
    return err.value


def test_refused_parity_is_a_device_error_and_the_port_is_released(pty_path: str) -> None:
    async def go() -> tuple[DeviceError, DeviceError]:
        return await read_error(pty_path, parity="E"), await read_error(pty_path, parity="E")
    first, second = asyncio.run(go())
    for err in (first, second):  # the second attempt must not find the port "busy"
        assert "refused the serial settings 9600 8E1" in str(err)
        assert err.bus == pty_path and err.hint and "8N1" in err.hint


def test_cli_refused_parity_prints_one_line(pty_path: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["read", "--port", pty_path, "--parity", "E", "--profile", "eastron-sdm120",
               "--timeout", "0.3"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and "refused the serial settings" in err


def test_directory_missing_and_not_a_tty_are_named(tmp_path: Path) -> None:
    async def go() -> list[DeviceError]:
        return [await read_error(str(tmp_path)), await read_error(str(tmp_path / "ttyX")),
                await read_error("/dev/null")]
    directory, missing, null = asyncio.run(go())
    assert "is a directory" in str(directory) and "another program" not in str(directory)
    assert "does not exist" in str(missing) and "/dev/serial/by-id/" in str(missing)
    assert "not a serial device (not a terminal)" in str(null)


def test_port_held_by_another_program_is_busy(pty_path: str) -> None:
    holder = serial.Serial(pty_path, exclusive=True)
    try:
        err = asyncio.run(read_error(pty_path))
    finally:
        holder.close()
    assert "in use by another program" in str(err) and "fuser" in str(err)


def test_permission_denied_suggests_the_dialout_group() -> None:
    err = port_error("/dev/ttyUSB0", PermissionError(errno.EACCES, "Permission denied"),
                     "serial port")
    assert "permission denied on serial port /dev/ttyUSB0" in str(err)
    assert err.hint and "dialout" in err.hint


@pytest.mark.parametrize("flag", ["--p1", "--d0"])
def test_serial_telegram_port_that_is_not_a_terminal_is_one_line(
        flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """P1 and D0 read a whole telegram or nothing: a port that is not a serial device is
    one line naming it, as for Modbus (not pyserial's "Inappropriate ioctl")."""
    rc = main(["read", flag, "/dev/null", "--timeout", "0.3"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("meterchain read: error: [bus /dev/null]")
    assert "not a serial device (not a terminal)" in line and "ioctl" not in line


def _pty_answering(answer: bytes) -> tuple[Callable[[], None], str]:
    """A pseudo-terminal whose far end answers every request with ``answer``: (stop, path)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    os.read(master, 1024)
                    os.write(master, answer)
                except OSError:
                    return

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    def close() -> None:
        stop.set()
        t.join(5)
        os.close(slave)
        os.close(master)
    return close, path


def test_d0_garbled_identification_is_one_line_naming_the_port(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Something that answers the D0 sign-on with a line that is not an identification:
    one line naming the port and what to check, not a bare parser message."""
    close, path = _pty_answering(b"/garbage\r\n")
    try:
        rc = main(["read", "--d0", path, "--timeout", "0.3"])
    finally:
        close()
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(f"meterchain read: error: [bus {path}]"), err
    assert "not an identification message" in err
    assert "optical head" in err and "mode C" in err
