#!/usr/bin/env bash
# Set up a fresh machine for imagenot: WordNet (Debian packages, when apt is usable) and a
# virtual environment in .venv with the package and its dependencies. Idempotent and quick
# when nothing changed. Used by `make demo` and `make test`, and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if ! "$PY" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
  echo "setup: Python 3.10-3.12 is required (img2dataset needs imghdr, removed in 3.13); set PYTHON=..." >&2
  exit 1
fi

# WordNet 3.0 for the offline path. With the network, `imagenot wordnet` also uses nltk.download.
if [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/wordnet/index.sense ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && $SUDO true 2>/dev/null; then
    echo "setup: installing WordNet 3.0 (wordnet-base, wordnet-sense-index)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null; }
  else
    echo "setup: WordNet not installed and apt-get not usable; the workflow will try nltk.download."
  fi
fi

stamp="$VENV/.imagenot-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  echo "setup: installing imagenot and its dependencies into $VENV (torch is large: a few minutes)"
  "$VENV/bin/python" -m pip install -q -e '.[test]'
  touch "$stamp"
fi
