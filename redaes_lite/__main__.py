"""``python -m redaes_lite``: the ``redaes-lite`` command, for where the console script is not on PATH."""

from .cli import main

main()
