"""Opening serial ports, with errors a technician can act on: the one place that knows.

Used by :mod:`drivers.p1` and :mod:`drivers.d0` (which open ports with pyserial) and by
:mod:`drivers.modbus_bus` (where pymodbus opens the port). pyserial, termios and OS
exceptions never escape: a missing port, a permission problem, a busy port, a path
that is no serial device, or settings the port refuses become a :class:`DeviceError`
naming the port, the real cause and what to do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import termios

import serial

from ledger.errors import ConfigError, DeviceError

PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
BAUDRATES: tuple[int, ...] = tuple(b for b in serial.Serial.BAUDRATES if b >= 300)
"""Standard rates a serial adapter can be set to (meters use 300..115200)."""


def check_line(baudrate: int | None, parity: str | None, stopbits: int | None,
               bytesize: int | None, default_baud: int = 9600, default_parity: str = "N",
               default_bytesize: int = 8) -> tuple[int, str, int, int]:
    """Validated ``(baudrate, parity, stopbits, bytesize)``; None takes the default.

    A value that is given but wrong (``0`` included) is refused, never replaced by a
    default.

    Raises:
        ConfigError: naming ``baudrate``, ``parity``, ``stopbits`` or ``bytesize``.
    """
    baud = default_baud if baudrate is None else baudrate
    if type(baud) is not int or baud not in BAUDRATES:
        raise ConfigError("baudrate", f"{baud!r} is not a standard baud rate (common: 1200, "
                          "2400, 4800, 9600, 19200, 38400, 57600, 115200)")
    par = (default_parity if parity is None else str(parity)).upper()
    if par not in PARITIES:
        raise ConfigError("parity", f"{parity!r} is not N, E or O")
    stop = 1 if stopbits is None else stopbits
    if stop not in (1, 2) or type(stop) is not int:
        raise ConfigError("stopbits", f"{stop!r} is not 1 or 2")
    size = default_bytesize if bytesize is None else bytesize
    if size not in (7, 8) or type(size) is not int:
        raise ConfigError("bytesize", f"{size!r} is not 7 or 8")
    return baud, par, stop, size


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
    except termios.error as exc:
        settings = f"{baudrate} {bytesize}{parity}{stopbits}"
        raise (settings_refused(port, exc, settings, what) if _errno(exc) == errno.EINVAL
               else port_error(port, exc, what)) from None
    except (serial.SerialException, OSError) as exc:
        raise port_error(port, exc, what) from None
    except ValueError as exc:
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


def _errno(exc: BaseException) -> int | None:
    """The errno of an OSError, a SerialException wrapping one, or a termios.error
    (pyserial raises "Could not configure port" while handling the termios.error, which
    then is the exception's context)."""
    seen: BaseException | None = exc
    for _ in range(4):  # the exception, then what it was raised from or while handling
        if seen is None:
            break
        code = getattr(seen, "errno", None)
        if code is None and isinstance(seen, termios.error) and seen.args:
            code = seen.args[0]
        if isinstance(code, int):
            return code
        seen = seen.__cause__ or seen.__context__
    return None


def settings_refused(port: str, exc: BaseException, settings: str, what: str) -> DeviceError:
    """The port refused line settings (``tcsetattr`` gave EINVAL).

    Virtual ports (pseudo-terminals, socat links, some USB bridges) cannot do parity or
    7-bit framing and refuse a change that touches nothing else.
    """
    reason = exc.args[-1] if exc.args else exc
    return DeviceError(f"{what} {port} refused the serial settings {settings} ({reason})",
                       bus=port, hint="the adapter cannot do this framing: pseudo-terminals "
                       "and some USB bridges take only 8N1; use a real RS-485 adapter, or "
                       "check the settings (baud rate, parity, data and stop bits)")


def diagnose(port: str, what: str) -> DeviceError | None:
    """Why ``port`` cannot be opened as a serial port, or None if it looks usable.

    Opens the node as pyserial would (read/write, no controlling tty, non-blocking),
    checks it is a terminal and that nobody holds its exclusive lock.
    """
    try:
        mode = os.stat(port).st_mode
    except OSError as exc:
        return port_error(port, exc, what)
    if stat.S_ISDIR(mode):
        return DeviceError(f"{what} {port} is a directory, not a serial device", bus=port,
                           hint="give the device node, e.g. /dev/ttyUSB0 or a "
                           "/dev/serial/by-id/ entry")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        return port_error(port, exc, what)
    try:
        if not os.isatty(fd):
            return _not_a_tty(port, what)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return port_error(port, exc, what)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return None


def _not_a_tty(port: str, what: str) -> DeviceError:
    return DeviceError(f"{what} {port} is not a serial device (not a terminal)", bus=port,
                       hint="give the serial adapter's device node (ls /dev/ttyUSB* "
                       "/dev/ttyAMA* /dev/serial/by-id/)")


def port_error(port: str, exc: BaseException, what: str) -> DeviceError:
    """A :class:`DeviceError` for a pyserial/OS/termios failure on ``port``, with a hint."""
    code = _errno(exc)
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
    if code == errno.ENOTTY or "[Errno 25]" in text:
        return _not_a_tty(port, what)
    if code == errno.EISDIR or "[Errno 21]" in text:
        return DeviceError(f"{what} {port} is a directory, not a serial device", bus=port,
                           hint="give the device node, e.g. /dev/ttyUSB0")
    if code in (errno.ENXIO, errno.ENODEV, errno.EIO):
        return DeviceError(f"{what} {port} has no device behind it ({os.strerror(code)})",
                           bus=port, hint="the adapter was unplugged or failed: replug it "
                           "and check dmesg")
    return DeviceError(f"{what} {port} failed: {text}", bus=port,
                       hint="check the cable and the serial adapter")
