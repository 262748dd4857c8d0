#!/usr/bin/env bash
# Sourced by deploy/demo.sh and tests/run.sh: make ./.venv and install meterchain into it
# with the extras named in $1. System pip on Debian and Raspberry Pi OS refuses global
# installs (externally managed), so everything goes into a virtual environment; where the
# venv module itself is missing (python3-venv), it is installed with apt.
# One line per step on stdout; pip's own output goes to .venv/install.log, which an error
# names (set MC_INSTALL_LOG to put it elsewhere).
# shellcheck shell=bash
mc_dev_env() {
  local extras="${1:-replica}"
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv (a Python virtual environment in $PWD/.venv)"
    if ! python3 -m venv .venv 2>/dev/null; then
      rm -rf .venv
      local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
      echo "python3 venv module missing: installing python3-venv"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    fi
  fi
  local log="${MC_INSTALL_LOG:-$PWD/.venv/install.log}"
  : >"$log"
  echo "installing meterchain [$extras] into .venv (about a minute; log: $log)"
  if ! .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
      >>"$log" 2>&1 \
    || ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[${extras}]" \
      >>"$log" 2>&1; then
    echo "error: installing meterchain failed; pip's output is in $log" >&2
    tail -n 5 "$log" | sed 's/^/  /' >&2
    return 1
  fi
}
