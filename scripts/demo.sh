#!/usr/bin/env bash
# Set up (first run only) and run the main job on the bundled synthetic ECG.
source "$(dirname "$0")/_env.sh"
"$VENV/bin/fastecg" info
"$VENV/bin/fastecg" demo "$@"
