#!/usr/bin/env bash
# Regenerate the shell completion scripts from the CLI (click's completion protocol).
# The scripts call back into `ecgtool` at TAB time, so they stay current with the
# options; tests/test_cli.py checks that these files match what click generates.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ecgtool=${ECGTOOL:-ecgtool}
_ECGTOOL_COMPLETE=bash_source "$ecgtool" > "$here/ecgtool.bash"
_ECGTOOL_COMPLETE=zsh_source "$ecgtool" > "$here/_ecgtool"
_ECGTOOL_COMPLETE=fish_source "$ecgtool" > "$here/ecgtool.fish"
