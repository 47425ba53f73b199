#!/usr/bin/env bash
# MAESTRO v3 (~1,300 expressive piano performances, CC BY-NC-SA 4.0). You download it; composer never does.
# The performance encoding (10 ms time steps, velocity) suits recorded performances better than the beat grid.
# Usage: corpora/recipes/maestro.sh path/to/maestro-v3.0.0-midi.zip
set -euo pipefail
zip=${1:?path to maestro-v3.0.0-midi.zip (from the MAESTRO dataset page)}
tmp=$(mktemp -d)
unzip -q "$zip" -d "$tmp"
composer corpus build "$tmp" -o corpora/maestro --encoding performance
composer corpus info corpora/maestro
