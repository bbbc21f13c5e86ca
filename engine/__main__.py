"""`python -m engine` runs the `llm-math` command line."""

from engine.cli import main

main()
