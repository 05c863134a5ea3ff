"""``python -m evaluation.movielens``."""

from evaluation.movielens.cli import run

run()
