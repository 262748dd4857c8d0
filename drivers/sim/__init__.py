"""Simulated meters speaking real Modbus over real transports (TCP sockets, pseudo-terminals).

- :mod:`drivers.sim.model` -- the simulated electrical state (rising counters, prosumer export).
- :mod:`drivers.sim.meter` -- a profile-driven pymodbus server for one or more units.
- :mod:`drivers.sim.sunspec` -- a SunSpec inverter/meter register image.
- :mod:`drivers.sim.faults` -- a raw responder for faults pymodbus servers cannot show
  (silence, corrupted CRC, garbage bytes, answers from a wrong unit id).
- :mod:`drivers.sim.pty` -- a linked pseudo-terminal pair for RTU over a "serial line".
"""
