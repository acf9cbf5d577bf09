"""Benchmarks of the engine, the verifier and the agent loop (python -m benchmarks.<name>); nothing imports this package."""
