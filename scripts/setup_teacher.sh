#!/usr/bin/env bash
# Create .venv-teacher: a separate venv holding the musicnn teacher (ISC licence) and a CPU
# TensorFlow that can run its TF1 checkpoints. Used only by training/teacher.py to make soft
# labels at training time; never imported by onbeat, and its weights are never copied into the
# repository. Idempotent: re-running only installs what is missing.
#
#   bash scripts/setup_teacher.sh            # then:
#   .venv-teacher/bin/python training/teacher.py --out data/teacher
#
# Why these pins:
# * tensorflow-cpu 2.15 is the last release with Keras 2 built in, so the tf.compat.v1.layers
#   graph code in musicnn/models.py still builds; it has Python 3.11 wheels and needs numpy<2.
# * musicnn 0.1.0 pins numpy<1.17 and pulls librosa; it is installed with --no-deps. Only its
#   model definition (models.py, configuration.py) and checkpoints are used: the mel is computed
#   by training/teacher.py itself (in float32), so librosa is not needed.
set -euo pipefail

cd "$(dirname "$0")/.."

# The unlabelled real audio the teacher labels (training/teacher.py --sets fof,debian) comes
# from Debian packages; install the missing ones (needs root).
pkgs=(fretsonfire-songs-muldjord fretsonfire-songs-sectoid wesnoth-1.16-music frozen-bubble-data
  hedgewars-data supertuxkart-data)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=${VENV:-.venv-teacher}
PYTHON=${PYTHON:-python3}
PY="$VENV/bin/python"
STAMP="$VENV/.teacher-installed"

if [[ -f "$STAMP" ]] && "$PY" -c 'import musicnn.models, soundfile, soxr, tqdm' 2>/dev/null; then
    echo "$VENV ready"
    exit 0
fi

test -x "$PY" || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q 'tensorflow-cpu==2.15.1' 'numpy>=1.23.5,<2' soundfile soxr tqdm
"$PY" -m pip install -q --no-deps 'musicnn==0.1.0'

# Check: the four checkpoints are there and the graph builds.
"$PY" - <<'EOF'
import os
import musicnn.models  # noqa: F401  (builds on tf.compat.v1.layers)
import soundfile

root = os.path.dirname(musicnn.models.__file__)
for m in ("MSD_musicnn", "MTT_musicnn"):
    assert os.path.exists(os.path.join(root, m, ".index")), f"missing checkpoint {m}"
print("musicnn checkpoints in", root, "| libsndfile", soundfile.__libsndfile_version__)
EOF
touch "$STAMP"
echo "$VENV ready"
