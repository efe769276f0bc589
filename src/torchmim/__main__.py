"""``python -m torchmim`` is the ``torchmim`` command."""

from .cli import main

main()
