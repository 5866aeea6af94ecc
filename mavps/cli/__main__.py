"""`python -m mavps.cli ...` is the same as the `mavps` command."""
from . import main

main()
