"""``meterchain key init`` and ``meterchain key show``: the gateway key of a configured agent.

An image built with ``deploy/install.sh --root`` holds no key (every gateway flashed
from it would otherwise sign with the same one). The unit runs ``key init`` before
anything else at every start: it creates ``gateway.key`` (0600, as the service user)
only when none exists -- as Raspberry Pi OS regenerates SSH host keys at first boot --
and prints the public key to the journal. ``key show`` prints it for enrollment.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import keyfiles as keys
from agent.service.config import DEFAULT_CONFIG_PATH, read_toml
from ledger.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("key", help="create (first start) or show the gateway key",
                       description="The gateway's Ed25519 key, at [gateway] key_path of the "
                                   "agent config.")
    ksub = k.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    for name, text, func in (
        ("show", "print the gateway's public key (for enrollment at the utility)", cmd_show),
        ("init", "create the gateway key if there is none (the unit runs this at every "
                 "start); print its public key", cmd_init),
    ):
        p = ksub.add_parser(name, help=text, description=text)
        p.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                       help=f"agent config file (default {DEFAULT_CONFIG_PATH})")
        p.set_defaults(func=func)


def configured_key_path(config: str) -> Path:
    """``[gateway] key_path`` of the config, read without the other checks (a first
    start must make the key even when another part of the config still needs work).

    Raises:
        ConfigError: unreadable config, or no usable key_path.
    """
    data: Any = read_toml(config)
    gateway = data.get("gateway") if isinstance(data, dict) else None
    path = gateway.get("key_path") if isinstance(gateway, dict) else None
    if not isinstance(path, str) or not path:
        raise ConfigError("gateway.key_path", "is required (a file path)", source=config)
    return Path(path)


def public_key(key_path: Path) -> bytes:
    """The public key of the gateway key at ``key_path`` (its ``gateway.pub`` beside it
    when readable, else derived from the private key).

    Raises:
        KeyFileError: neither can be read.
    """
    pub = key_path.with_name(keys.GATEWAY_PUB)
    if key_path.name == keys.GATEWAY_KEY and pub.is_file():
        return keys.load_public_key(str(pub))
    return keys.public_from_seed(keys.load_signing_key(key_path))


def cmd_show(args: argparse.Namespace) -> int:
    key_path = configured_key_path(args.config)
    print(public_key(key_path).hex())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    key_path = configured_key_path(args.config)
    if key_path.exists():
        print(f"gateway key {key_path} present; public key {public_key(key_path).hex()}")
        return 0
    if key_path.name != keys.GATEWAY_KEY:
        raise ConfigError("gateway.key_path", f"{key_path} does not exist and `key init` "
                          f"creates only files named {keys.GATEWAY_KEY}; point key_path at "
                          f"{key_path.with_name(keys.GATEWAY_KEY)} or create the key "
                          "elsewhere with `meterchain keygen`", source=args.config)
    public = keys.generate_gateway_key(key_path.parent)
    print(f"generated the gateway key {key_path} on this device; public key (enroll it at "
          f"the utility's replica): {public.hex()}")
    return 0
