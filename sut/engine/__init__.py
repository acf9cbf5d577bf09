"""Engines that run many agent loops at once, and the factory every entry point builds one with
(docs/engine.md, docs/engines.md)."""
