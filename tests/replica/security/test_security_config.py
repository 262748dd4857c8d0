"""The security settings of replica.toml: defaults, and bad values named by key."""

from __future__ import annotations

import pytest

from ledger.errors import ConfigError, ConfigErrors
from replica.config import ReplicaConfig, parse_config


def test_defaults_open_only_health_and_heads() -> None:
    assert ReplicaConfig().public == frozenset({"health", "heads"})
    assert parse_config({"auth": {"public": []}}).public == frozenset()


@pytest.mark.parametrize(("data", "key"), [
    ({"auth": {"public": ["everything"]}}, "auth.public"),
    ({"auth": {"public": "heads"}}, "auth.public"),
    ({"auth": {"tokens": []}}, "auth.tokens"),
    ({"listen": {"tls_client_ca": "ca.pem"}}, "listen.tls_client_ca"),
    ({"limits": {"max_inflight_body_bytes": 10}}, "limits.max_inflight_body_bytes"),
    ({"limits": {"max_body_bytes": 100, "max_inflight_body_bytes_per_client": 99}},
     "limits.max_inflight_body_bytes_per_client"),
    ({"limits": {"max_forks_per_height": 0}}, "limits.max_forks_per_height"),
    ({"limits": {"body_timeout_s": -1}}, "limits.body_timeout_s"),
])
def test_bad_security_settings_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        parse_config(data)
    assert key in str(info.value)
