"""The code tasks: the two suites, their families and generators, the frozen evaluation sets
(docs/tasks.md)."""
