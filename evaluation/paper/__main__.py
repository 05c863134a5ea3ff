"""``python -m evaluation.paper {recovery,speed,dln,sparse}``."""

from evaluation.paper.cli import main

main()
