"""``python -m fastecg``: the ``fastecg`` command (also ``torchrun -m fastecg pretrain``)."""

from .cli import main

if __name__ == "__main__":  # not on import (the doctest and docs runs import every module)
    raise SystemExit(main())
