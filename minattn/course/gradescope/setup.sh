#!/usr/bin/env bash
# minattn's Gradescope autograder, set up once: Gradescope runs this as root on its Ubuntu
# image when it builds the autograder, from the folder the bundle was unpacked into
# (/autograder/source).
#
# It installs Python (3.10 or newer) and bubblewrap with apt, makes a virtual environment
# in /autograder/minattn-env, installs into it the minattn wheel beside this script with its
# dependencies and what runs notebooks (nbclient, nbformat, ipykernel), makes the
# unprivileged user that student code runs as, and closes this folder to other users.
#
# Two switches are for minattn's own test suite only; Gradescope sets neither:
#   MINATTN_AUTOGRADER_ROOT  the folder that stands for /autograder
#   MINATTN_SETUP_PYTHON     an interpreter whose environment to install into (no apt,
#                            no new virtual environment)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${MINATTN_AUTOGRADER_ROOT:-/autograder}"
PYTHON="${MINATTN_SETUP_PYTHON:-}"

if [ -z "$PYTHON" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-venv bubblewrap util-linux
  python3 -m venv "$ROOT/minattn-env"
  PYTHON="$ROOT/minattn-env/bin/python"
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "minattn needs Python 3.10 or newer: choose Gradescope's Ubuntu 22.04 base image or a newer one" >&2
  exit 1
fi

"$PYTHON" -m pip install --progress-bar off "$HERE"/minattn-*-py3-none-any.whl nbclient nbformat ipykernel
"$PYTHON" -c 'import minattn.course.gradescope.autograder, nbclient, ipykernel'
echo "$PYTHON" > "$ROOT/minattn-python"  # the interpreter run_autograder uses

id -u @USER@ > /dev/null 2>&1 ||
  useradd --system --no-create-home --user-group --shell /usr/sbin/nologin @USER@
chmod o= "$HERE"  # the bundle: out of reach of student code even where bubblewrap cannot run
echo "minattn's autograder is set up: $("$PYTHON" --version), $(command -v bwrap || echo 'no bwrap')"
