"""`python -m pipelines.cli` runs the govlake command."""

from pipelines.cli import run

run()
