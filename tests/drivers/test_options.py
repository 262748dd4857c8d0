"""Driver options: a misspelled key or a value of the wrong type is refused, never ignored."""

from __future__ import annotations

import pytest

from drivers.base import MeterSpec, open_meter
from ledger.errors import ConfigError

MODBUS = {"host": "127.0.0.1", "profile": "eastron-sdm120"}


@pytest.mark.parametrize("protocol,fields,options,key,guess", [
    ("dsmr-p1", {"port": "/dev/null"}, {"telegram_timout_s": 5}, "telegram_timout_s",
     "telegram_timeout_s"),
    ("dsmr-p1", {"port": "/dev/null"}, {"varient": "v5"}, "varient", "variant"),
    ("modbus-tcp", MODBUS, {"inter_frame_gap": 5}, "inter_frame_gap", "inter_frame_gap_ms"),
    ("modbus-rtu", {"port": "/dev/null", "profile": "eastron-sdm120"},
     {"inter_frame_gap": 5}, "inter_frame_gap", "inter_frame_gap_ms"),
    ("sunspec-tcp", {"host": "127.0.0.1"}, {"bass": 40000}, "bass", "base"),
    ("iec62056-21", {"port": "/dev/null"}, {"max_baud": 9600}, "max_baud", "max_baudrate"),
])
def test_unknown_option_is_refused_naming_the_closest(protocol: str, fields: dict,
                                                      options: dict, key: str,
                                                      guess: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", protocol, options=options, **fields))
    assert err.value.path == f"options.{key}"
    assert f"did you mean {guess!r}" in err.value.message and "known: " in err.value.message
    assert guess in err.value.message.split("known: ")[1]


def test_unknown_option_without_a_close_match_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", "modbus-tcp", options={"colour": "red"}, **MODBUS))
    assert err.value.path == "options.colour"
    assert err.value.message == "unknown option; known: inter_frame_gap_ms"


@pytest.mark.parametrize("protocol,fields,options,key", [
    ("modbus-tcp", MODBUS, {"inter_frame_gap_ms": True}, "options.inter_frame_gap_ms"),
    ("modbus-tcp", MODBUS, {"inter_frame_gap_ms": "5"}, "options.inter_frame_gap_ms"),
    ("modbus-tcp", MODBUS, {"inter_frame_gap_ms": 1e9}, "options.inter_frame_gap_ms"),
    ("dsmr-p1", {"port": "/dev/null"}, {"variant": 5}, "options.variant"),
    ("dsmr-p1", {"port": "/dev/null"}, {"max_telegram_bytes": 100.5},
     "options.max_telegram_bytes"),
    ("dsmr-p1", {"port": "/dev/null"}, {"max_telegram_bytes": 10}, "options.max_telegram_bytes"),
    ("dsmr-p1", {"port": "/dev/null"}, {"variant": "lu", "key": 1234}, "options.key"),
    ("sunspec-tcp", {"host": "127.0.0.1"}, {"base": "40000"}, "options.base"),
    ("iec62056-21", {"port": "/dev/null"}, {"switch_delay_s": "0.3"}, "options.switch_delay_s"),
])
def test_option_of_the_wrong_type_is_refused(protocol: str, fields: dict, options: dict,
                                             key: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", protocol, options=options, **fields))
    assert err.value.path == key


def test_known_options_are_accepted() -> None:
    m = open_meter(MeterSpec("m", "dsmr-p1", port="/dev/null",
                             options={"variant": "v4", "telegram_timeout_s": 3,
                                      "max_telegram_bytes": 4096}))
    assert m.config.telegram_timeout_s == 3.0  # type: ignore[attr-defined]
    assert m.config.max_telegram_bytes == 4096  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol,fields,key", [
    ("modbus-rtu", {"port": "/dev/null", "profile": "eastron-sdm120", "baudrate": 0},
     "baudrate"),
    ("modbus-rtu", {"port": "/dev/null", "profile": "eastron-sdm120", "stopbits": 0},
     "stopbits"),
    ("modbus-tcp", {**MODBUS, "tcp_port": 0}, "tcp_port"),
    ("dsmr-p1", {"port": "/dev/null", "baudrate": 0}, "baudrate"),
    ("dsmr-p1", {"port": "/dev/null", "bytesize": 0}, "bytesize"),
])
def test_zero_line_settings_are_refused_not_replaced_by_defaults(protocol: str, fields: dict,
                                                                  key: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", protocol, **fields))
    assert err.value.path == key
