#!/usr/bin/env bash
# The built-in corpus: ~400 Bach chorales from music21's bundled MusicXML, converted offline.
# Needs: pip install 'composer[bach]'
set -euo pipefail
composer corpus bach -o corpora/bach
composer corpus info corpora/bach
