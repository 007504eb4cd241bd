"""`python -m bridge …` is `agni-bridge …` (the supervisor starts its children this way)."""

from bridge.cli import main

main(prog_name="agni-bridge")
