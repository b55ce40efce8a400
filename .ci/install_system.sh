#!/usr/bin/env bash
# System packages the tests need (Debian, run as root). Idempotent: apt runs only when
# something is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive  # jackd2 asks about realtime priority otherwise
pkgs=(libportaudio2 libsndfile1 pipewire pipewire-pulse pipewire-alsa wireplumber
      pulseaudio-utils dbus
      # MIDI clock tests: JACK with its dummy driver (no ALSA sequencer in the container)
      jackd2
      # Qt (PyQt6) offscreen and under Xvfb: pytest-qt imports QtGui at start-up
      xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0
      libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1
      libegl1 libgl1 libxkbcommon0 libfontconfig1 libglib2.0-0 fonts-dejavu-core
      # the MIDI renderer's test (generated heavy songs, no research data): fluidsynth and
      # one small General MIDI soundfont
      libfluidsynth3 timgm6mb-soundfont
      # the LMMS demo-song set's test renders a Debian demo song headless (with the LADSPA
      # effects that the demo songs use, which lmms only recommends)
      lmms tap-plugins caps
      # tracker-module labels (training.modules): libopenmpt renders a module the test writes
      libopenmpt0
      # the MMA groove set (training.render --sets mma): mma writes a song the test renders
      mma)
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
