#!/usr/bin/env bash
# Install, upgrade or remove the meterchain gateway agent on a Debian / Raspberry Pi OS
# machine. Run as root. Re-running it upgrades in place; configuration, the ledger and
# the gateway key are never overwritten.
#
#   install.sh [--wheelhouse DIR] [--source DIR] [--replica] [--no-start] [--root DIR]
#   install.sh --uninstall [--purge] [--root DIR]
#
# See docs/install.md for the whole procedure.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: install.sh [options]
  --wheelhouse DIR  install from a wheelhouse built by build-wheelhouse.sh (no network)
  --source DIR      install from this meterchain source tree (default: this checkout)
  --replica         also install the replica extra and its unit (for utilities)
  --no-start        enable the unit but do not start or restart it
  --root DIR        install into a staging root (image building, tests); DIR must hold
                    etc/passwd and etc/group; units are enabled, never started
  --uninstall       stop and remove the program and units; keep config, data and keys
  --purge           with --uninstall: also remove config, ledger, keys and the user
  -h, --help        this text
USAGE
}

die() { echo "install.sh: error: $*" >&2; exit 2; }
say() { echo "install.sh: $*"; }

ROOT=""
WHEELHOUSE=""
SOURCE=""
REPLICA=0
START=1
MODE=install
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a directory}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
    --replica) REPLICA=1; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
[ "$PURGE" -eq 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"
[ "$(id -u)" -eq 0 ] || die "run as root (sudo bash deploy/install.sh ...)"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -n "$SOURCE" ] || SOURCE="$(dirname "$here")"
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
  ROOT="$(cd "$ROOT" && pwd)"
  if [ ! -f "$ROOT/etc/passwd" ] || [ ! -f "$ROOT/etc/group" ]; then
    die "--root $ROOT has no etc/passwd and etc/group (seed it from a base image first)"
  fi
  START=0
fi

USER_NAME=meterchain
REPLICA_USER=meterchain-replica
OPT="$ROOT/opt/meterchain"
BIN="$ROOT/usr/local/bin"
ETC="$ROOT/etc/meterchain"
STATE="$ROOT/var/lib/meterchain"
REPLICA_ETC="$ROOT/etc/meterchain-replica"
REPLICA_STATE="$ROOT/var/lib/meterchain-replica"
KEYS="$STATE"  # gateway.key / gateway.pub, as key_path in agent.example.toml
UNITDIR="$ROOT/etc/systemd/system"
UNITS=(meterchain-agent.service)
[ "$REPLICA" -eq 0 ] || UNITS+=(meterchain-replica.service)

prefix_args=()
[ -z "$ROOT" ] || prefix_args=(--prefix "$ROOT")
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
systemctl_root() {
  if [ -n "$ROOT" ]; then systemctl --root="$ROOT" "$@"; else systemctl "$@"; fi
}
user_exists() { grep -q "^$1:" "$ROOT/etc/passwd"; }
group_exists() { grep -q "^$1:" "$ROOT/etc/group"; }

ensure_user() {  # name, extra groups (comma separated, may be empty)
  local name="$1" groups="$2"
  if ! user_exists "$name"; then
    local args=(--system --user-group --home-dir "/var/lib/$name" --no-create-home
                --shell /usr/sbin/nologin --comment "meterchain")
    [ -z "$groups" ] || args+=(--groups "$groups")
    useradd "${prefix_args[@]}" "${args[@]}" "$name"
    say "created system user $name${groups:+ (groups: $groups)}"
  elif [ -n "$groups" ]; then
    usermod "${prefix_args[@]}" --append --groups "$groups" "$name"
  fi
}

uid_of() { awk -F: -v u="$1" '$1 == u { print $3 }' "$ROOT/etc/passwd"; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$ROOT/etc/group"; }
# Numeric owners so a staging root's own user database is what counts.
own() { chown "$(uid_of "$1"):$(gid_of "$2")" "${@:3}"; }

install_program() {
  if [ ! -x "$OPT/bin/python" ]; then
    if ! python3 -m venv "$OPT" 2>/dev/null; then
      rm -rf "$OPT"
      [ -z "$ROOT" ] || die "python3 venv module missing on this machine (apt-get install python3-venv)"
      say "installing python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      python3 -m venv "$OPT"
    fi
  fi
  local target="meterchain"
  [ "$REPLICA" -eq 0 ] || target="meterchain[replica]"
  if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE is not a directory"
    "$OPT/bin/python" -m pip install --quiet --no-index --find-links "$WHEELHOUSE" \
      --upgrade "$target" || die "install from wheelhouse $WHEELHOUSE failed (built for another platform or Python?)"
  else
    [ -f "$SOURCE/pyproject.toml" ] || die "--source $SOURCE is not a meterchain source tree"
    "$OPT/bin/python" -m pip install --quiet --upgrade "${SOURCE}${target#meterchain}" \
      || die "install from $SOURCE failed"
  fi
  install -d -m 0755 "$OPT/share/examples" "$BIN"
  install -m 0644 "$here/agent.example.toml" "$here/replica.example.toml" "$OPT/share/examples/"
  # On PATH for technicians: `meterchain status`, `meterchain scan`, ...
  ln -sfn /opt/meterchain/bin/meterchain "$BIN/meterchain"
  # the docs (agent.md, install.md, ...) come with the package: $OPT/share/doc/meterchain
  [ -z "$ROOT" ] || unstage_program
  say "program installed in /opt/meterchain ($("$OPT/bin/python" -m meterchain --version 2>/dev/null || echo meterchain))"
}

# A staged venv names the staging directory in its scripts' #! lines, activate scripts,
# pyvenv.cfg and every .pyc: point them all at /opt/meterchain, where the image puts it.
unstage_program() {
  local f named
  named="$(grep -rlF "$ROOT" "$OPT/bin" "$OPT/pyvenv.cfg" 2>/dev/null || true)"  # none: upgrade
  while IFS= read -r f; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then
      sed -i "s#${ROOT}/opt/meterchain#/opt/meterchain#g; s#${ROOT}##g" "$f"
    fi
  done <<<"$named"
  find "$OPT" -name '*.pyc' -delete
  "$OPT/bin/python" -m compileall -q -j 0 -s "$ROOT" -p / "$OPT/lib" >/dev/null \
    || die "compiling the staged program failed"
}

install_config_and_state() {
  install -d -m 0750 "$ETC"
  own root "$USER_NAME" "$ETC"
  if [ ! -e "$ETC/agent.toml" ]; then
    install -m 0640 "$here/agent.example.toml" "$ETC/agent.toml"
    own root "$USER_NAME" "$ETC/agent.toml"
    say "wrote example config /etc/meterchain/agent.toml: edit meters and replicas, then run"
    say "  meterchain config check /etc/meterchain/agent.toml"
  else
    say "kept existing /etc/meterchain/agent.toml"
  fi
  install -d -m 0700 "$STATE"
  own "$USER_NAME" "$USER_NAME" "$STATE"
  if [ -e "$KEYS/gateway.key" ]; then
    say "kept existing gateway key"
  elif [ -n "$ROOT" ]; then
    # An image holds no key: every gateway flashed from it would sign with the same one.
    say "no gateway key in the image: each device creates its own at first start"
    say "  (meterchain-agent runs \`meterchain key init\`; \`meterchain key show\` prints it)"
    return 0
  else
    "$OPT/bin/python" -m meterchain keygen --out "$KEYS" >/dev/null
    own "$USER_NAME" "$USER_NAME" "$KEYS/gateway.key" "$KEYS/gateway.pub"
    chmod 0600 "$KEYS/gateway.key"
    say "generated the gateway key on this device"
  fi
  say "gateway public key (enroll it at the utility's replica; \`meterchain key show\`):"
  echo "  $(cat "$KEYS/gateway.pub")"
}

install_replica_config_and_state() {
  install -d -m 0750 "$REPLICA_ETC"
  own root "$REPLICA_USER" "$REPLICA_ETC"
  if [ ! -e "$REPLICA_ETC/replica.toml" ]; then
    install -m 0640 "$here/replica.example.toml" "$REPLICA_ETC/replica.toml"
    own root "$REPLICA_USER" "$REPLICA_ETC/replica.toml"
    say "wrote example config /etc/meterchain-replica/replica.toml (listen, storage, TLS)"
  else
    say "kept existing /etc/meterchain-replica/replica.toml"
  fi
  install -d -m 0700 "$REPLICA_STATE"
  own "$REPLICA_USER" "$REPLICA_USER" "$REPLICA_STATE"
}

install_units() {
  install -d -m 0755 "$UNITDIR"
  local unit
  for unit in "${UNITS[@]}"; do
    install -m 0644 "$SOURCE/systemd/$unit" "$UNITDIR/$unit"
  done
  if systemd_running; then systemctl daemon-reload; fi
  for unit in "${UNITS[@]}"; do
    systemctl_root enable "$unit" >/dev/null 2>&1 || die "systemctl enable $unit failed"
    if systemd_running && [ "$START" -eq 1 ]; then
      systemctl restart "$unit"
      say "started $unit: journalctl -u $unit -f"
    else
      say "enabled $unit (not started${ROOT:+: staging root})"
    fi
  done
}

uninstall() {
  local unit
  for unit in meterchain-agent.service meterchain-replica.service; do
    [ -e "$UNITDIR/$unit" ] || continue
    if systemd_running; then systemctl disable --now "$unit" >/dev/null 2>&1 || true; fi
    if [ -n "$ROOT" ]; then systemctl_root disable "$unit" >/dev/null 2>&1 || true; fi
    rm -f "$UNITDIR/$unit"
  done
  if systemd_running; then systemctl daemon-reload; fi
  rm -rf "$OPT"
  if [ "$(readlink "$BIN/meterchain" 2>/dev/null)" = /opt/meterchain/bin/meterchain ]; then
    rm -f "$BIN/meterchain"
  fi
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$STATE" "$REPLICA_ETC" "$REPLICA_STATE"
    for u in "$USER_NAME" "$REPLICA_USER"; do
      if user_exists "$u"; then userdel "${prefix_args[@]}" "$u"; fi
    done
    say "purged: program, units, config, ledger, keys and users removed"
  else
    say "removed program and units; kept /etc/meterchain, /var/lib/meterchain (ledger, keys) and the user"
  fi
}

if [ "$MODE" = uninstall ]; then
  uninstall
  exit 0
fi

group_exists dialout || groupadd "${prefix_args[@]}" --system dialout
ensure_user "$USER_NAME" dialout
[ "$REPLICA" -eq 0 ] || ensure_user "$REPLICA_USER" ""
install_program
install_config_and_state
[ "$REPLICA" -eq 0 ] || install_replica_config_and_state
install_units
