"""``python -m fastecg``: the ``fastecg`` command (also ``torchrun -m fastecg pretrain``)."""

from .cli import main

raise SystemExit(main())
