"""`python -m mavps ...` is the same as the `mavps` command."""
from .cli import main

main()
