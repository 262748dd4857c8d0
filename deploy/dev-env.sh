#!/usr/bin/env bash
# Sourced by deploy/demo.sh and tests/run.sh: make ./.venv and install meterchain into it
# with the extras named in $MC_EXTRAS. System pip on Debian and Raspberry Pi OS refuses
# global installs (externally managed), so everything goes into a virtual environment;
# where the venv module itself is missing (python3-venv), it is installed with apt.
# shellcheck shell=bash
mc_dev_env() {
  local extras="${1:-replica}"
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
      rm -rf .venv
      local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
      echo "python3 venv module missing: installing python3-venv"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[${extras}]"
}
