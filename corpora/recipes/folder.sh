#!/usr/bin/env bash
# Any folder of MIDI files (searched recursively; .mid .midi .kar .smf .rmi in any letter case).
# Usage: corpora/recipes/folder.sh ~/midi/my-collection corpora/mine [beat|performance]
set -euo pipefail
src=${1:?MIDI folder}
out=${2:?corpus folder, e.g. corpora/mine}
enc=${3:-beat}
composer corpus build "$src" -o "$out" --encoding "$enc"
composer corpus info "$out"
