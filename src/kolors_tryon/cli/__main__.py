"""`python -m kolors_tryon.cli`: the `tryon` command without its console script (the
tests, and the worker processes `tryon demo` starts, run it so)."""

from kolors_tryon.cli import main

if __name__ == "__main__":  # imported on its own (tests/unit/test_layers.py), it runs nothing
    main()
