"""Opening serial ports for the serial meter drivers, with errors a technician can act on.

Shared by :mod:`drivers.p1` and :mod:`drivers.d0`. pyserial's exceptions never escape:
a missing port, a permission problem or a busy port become :class:`DeviceError`
naming the port and what to do.
"""

from __future__ import annotations

import errno
import termios

import serial

from agent.errors import DeviceError

PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


def open_port(port: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int,
              timeout_s: float, what: str) -> serial.Serial:
    """Open ``port`` with these settings; ``what`` names the use (``P1 port``).

    Raises:
        DeviceError: the port does not exist, access is denied, it is busy, or the
            settings are refused; the hint says what to check.
    """
    try:
        try:
            return _open(port, baudrate, bytesize, parity, stopbits, timeout_s)
        except termios.error as exc:
            if exc.args[0] != errno.EINVAL:
                raise
            # Virtual ports (ptys, some USB bridges) cannot take 7-bit/parity framing and
            # refuse a tcsetattr that changes nothing else; changing the speed in two
            # steps lets the settings apply (the framing stays what the device supports).
            ser = _open(port, 9600 if baudrate != 9600 else 4800, bytesize, parity, stopbits,
                        timeout_s)
            ser.baudrate = baudrate
            return ser
    except serial.SerialException as exc:
        raise port_error(port, exc, what) from None
    except (ValueError, OSError, termios.error) as exc:
        raise DeviceError(f"cannot open {what} {port}: {exc}", bus=port,
                          hint="check the serial settings") from None


def _open(port: str, baudrate: int, bytesize: int, parity: str, stopbits: int,
          timeout_s: float) -> serial.Serial:
    return serial.Serial(
        port=port,
        baudrate=baudrate,
        bytesize=bytesize,
        parity=PARITIES[parity],
        stopbits=stopbits,
        timeout=timeout_s,
        exclusive=True,
    )


def port_error(port: str, exc: Exception, what: str) -> DeviceError:
    """A :class:`DeviceError` for a pyserial/OS failure on ``port``, with a hint."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text and (
            "[Errno 2]" in text):
        return DeviceError(f"{what} {port} does not exist", bus=port,
                           hint="check the cable is plugged in and the device name "
                                "(ls /dev/ttyUSB* /dev/ttyAMA* /dev/serial/by-id/)")
    if code == errno.EACCES or "Permission denied" in text or "[Errno 13]" in text:
        return DeviceError(f"permission denied on {what} {port}", bus=port,
                           hint="add the agent's user to the dialout group "
                                "(sudo usermod -aG dialout USER, then log in again)")
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively" in text or "[Errno 11]" in text:
        return DeviceError(f"{what} {port} is in use by another program", bus=port,
                           hint="stop the other reader (fuser -v PORT shows who holds it)")
    return DeviceError(f"{what} {port} failed: {text}", bus=port,
                       hint="check the cable and the serial adapter")
