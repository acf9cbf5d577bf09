"""The agentic code-task suite: small functions whose prompts leave conventions open that only the
hidden test cases reveal, so that retries with feedback are needed by construction (docs/tasks.md).

- ``family``: the Family base, open conventions (``Conv``), input helpers;
- ``fam_numbers``, ``fam_loops``, ``fam_strings``, ``fam_chars``, ``fam_dicts``: the families;
- ``record``: ``AgenticTask``, task files of either suite (``load_task_file``), ``normalised``;
- ``suite``: the split by core, the seeded generator, the frozen evaluation set;
- ``mutate``: mutants of reference solutions and their kill rate through the real sandbox.
"""
