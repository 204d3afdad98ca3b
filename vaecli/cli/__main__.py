"""`python -m vaecli.cli`: the `vae` program."""
from vaecli.cli import main_process

main_process()
