"""``python -m sut.train``: the command of sut/train/loop.py."""
import sys

from sut.train.loop import main

sys.exit(main())
