"""``python -m composer`` (and ``torchrun ... -m composer train ...`` for several GPUs)."""

from composer.cli import main

main()
