"""``python -m redaes_lite``: the ``redaes-lite`` command, for where the console script is not on PATH."""

from .cli import main

if __name__ == "__main__":  # importing the module (pkgutil.walk_packages, docs tools) must not run the CLI
    main()
