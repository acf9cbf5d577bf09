"""``python -m sut.tasks``: the command of sut/tasks/basic.py."""
import sys

from sut.tasks.basic import main

sys.exit(main())
