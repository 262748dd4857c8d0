"""Suite-wide settings: no test may fail because this machine is slow.

Hypothesis by default fails an example that runs longer than 200 ms (``deadline``) and a
test whose data generation is slow (the ``too_slow`` health check): both measure the
machine, and a shared 2-core CI runner under load trips them. The property tests assert
properties; how fast they run is for bench/.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("meterchain", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("meterchain")
