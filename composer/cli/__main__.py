"""``python -m composer.cli`` (as ``python -m composer``)."""

from composer.cli import main

main()
