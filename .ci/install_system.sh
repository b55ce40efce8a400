#!/usr/bin/env bash
# System packages the tests need (Debian, run as root). Idempotent: apt runs only when
# something is missing.
set -euo pipefail
pkgs=(libportaudio2 libsndfile1 pipewire pipewire-pulse pipewire-alsa wireplumber
      pulseaudio-utils dbus)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_system: need root to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install_system: ok (${#missing[@]} package(s) installed)"
