"""The one place listing built-in drivers: importing a module registers its driver(s).

Adding a protocol is one module and one line here.
"""

# Each import registers its driver names with drivers.base.register on import.
import drivers.d0  # noqa: E402,F401  iec62056-21
import drivers.modbus  # noqa: E402,F401  modbus-rtu, modbus-tcp, modbus-rtu-over-tcp
import drivers.p1  # noqa: E402,F401  dsmr-p1
import drivers.sunspec  # noqa: E402,F401  sunspec-tcp, sunspec-rtu
