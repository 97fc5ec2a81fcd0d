#!/usr/bin/env bash
# Installs the Debian 12 packages ks-tools needs to build and test, if any are missing.
# Runs apt-get as root; as another user it prints the command to run and exits 4.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config git make
  libeigen3-dev libsimdjson-dev libzstd-dev zstd libmatio-dev zlib1g-dev
  libgtest-dev bats bats-assert bats-support
  python3-numpy python3-scipy snakemake
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: not root; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 4
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
