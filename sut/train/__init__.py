"""Training: data from verified mistakes, the loop, self-repair, the report (docs/model.md)."""
