"""The engine's native backend: the C kernels and their ctypes loaders (docs/engine.md)."""
