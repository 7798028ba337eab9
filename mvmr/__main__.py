"""``python -m mvmr`` (and ``torchrun -m mvmr``) runs the CLI."""
from .cli import main

main()
