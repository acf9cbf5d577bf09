"""Training data: first attempts and retry transcripts built from verified mistakes.

A training example is one transcript of a training task: ``n`` wrong attempts (each
a ``plausible_mistake`` of the reference solution, followed by the feedback the REAL
verifier gave for it) and then the reference solution. ``n = 0`` is a plain first
attempt; ``n >= 1`` teaches the model to read feedback, and ``n`` up to 4 covers every
retry step and every position a 5-attempt transcript reaches. Only the final, correct
attempt is under the loss: the wrong attempts are context, never targets.

Mistakes are generated and verified once, up front and in parallel (``verify_many``);
mistakes that pass (a "mistake" that is still correct) are dropped.
"""
from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from sut.model import transcript as tr
from sut.train.mistakes import plausible_mistake
from sut.tasks.record import Task
from sut.tasks.basic import iter_train_tasks
from sut.model.tokenizer import CodeTokenizer

log = logging.getLogger(__name__)

Mistake = tuple[str, str]  # (wrong code, verifier feedback for it)
DEFAULT_MIX = (0.4, 0.3, 0.15, 0.1, 0.05)  # share of examples with 0, 1, 2, 3, 4 wrong attempts


@dataclass
class Example:
    task: Task
    mistakes: list[Mistake]   # verified wrong attempts with their feedback (may be empty)


def take_train_tasks(n: int, seed: int) -> list[Task]:
    return list(itertools.islice(iter_train_tasks(seed), n))


def build_examples(tasks: Sequence[Task], pool, per_task: int, seed: int,
                   literal_weight: float = 0.0) -> list[Example]:
    """Draw up to ``per_task`` distinct mistakes per task and keep the ones the verifier rejects.
    ``literal_weight`` > 0 adds mis-copied prompt literals to the mistake kinds (sut.train.mistakes)."""
    drafts: list[tuple[int, str]] = []
    for i, task in enumerate(tasks):
        rng = random.Random(f"{seed}:{task.id}")
        seen = {task.solution}
        for _ in range(per_task * 2):  # a few extra draws: some mistakes repeat or are no-ops
            code = plausible_mistake(task, rng, literal_weight)
            if code not in seen:
                seen.add(code)
                drafts.append((i, code))
            if len(seen) > per_task:
                break
    log.info("drafted %d mistakes for %d tasks; verifying them in the sandbox", len(drafts), len(tasks))
    verdicts = pool.verify_many([(code, tasks[i].check) for i, code in drafts], progress=True)
    examples = [Example(t, []) for t in tasks]
    dropped = 0
    for (i, code), v in zip(drafts, verdicts):
        if v.passed or v.status.value == "sandbox_error" or not v.feedback:
            dropped += 1
        else:
            examples[i].mistakes.append((code, v.feedback))
    log.info("mistakes: %d drafted, %d kept, %d dropped (passed or no feedback)", len(drafts), len(drafts) - dropped,
             dropped)
    return examples


def tokenizer_corpus(examples: Sequence[Example]) -> Iterator[str]:
    """Texts the BPE is learnt from: prompts, solutions, mistakes and feedback."""
    for ex in examples:
        yield ex.task.prompt
        yield ex.task.solution
        for code, fb in ex.mistakes:
            yield code
            yield fb


def transcript_for(tok: CodeTokenizer, ex: Example, n_mistakes: int, rng: random.Random,
                   prefix_loss: bool = False) -> tr.Piece:
    """Transcript with ``n_mistakes`` wrong attempts (drawn with replacement if the task has
    fewer distinct ones: a sampled retry can repeat a mistake) and then the solution."""
    n = n_mistakes if ex.mistakes else 0
    wrong = rng.sample(ex.mistakes, n) if n <= len(ex.mistakes) else [rng.choice(ex.mistakes) for _ in range(n)]
    attempts = [code for code, _ in wrong] + [ex.task.solution]
    return tr.build_transcript(tok, ex.task.prompt, attempts, [fb for _, fb in wrong], prefix_loss)


def draw_transcripts(tok: CodeTokenizer, examples: Sequence[Example], rng: random.Random,
                     mix: Sequence[float] = DEFAULT_MIX, block_size: int | None = None,
                     prefix_loss: bool = False) -> list[tr.Piece]:
    """One transcript per example, its number of wrong attempts drawn from ``mix``."""
    out = []
    for ex in examples:
        n = rng.choices(range(len(mix)), weights=mix)[0]
        seq = transcript_for(tok, ex, n, rng, prefix_loss)
        while block_size is not None and len(seq) > block_size + 1 and n > 0:  # +1: inputs drop the last token
            n -= 1
            seq = transcript_for(tok, ex, n, rng, prefix_loss)
        out.append(seq)
    return out


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # idx, steps, targets, mask: (B, T) each


def make_batches(seqs: Sequence[tr.Piece], batch_size: int, pad_id: int, rng: random.Random,
                 block_size: int) -> list[Batch]:
    """Length-bucketed, padded batches in random order (little padding, so CPU time goes to real tokens)."""
    rows = sorted((tr.training_arrays(s) for s in seqs), key=lambda r: len(r[0]))
    batches = []
    for start in range(0, len(rows), batch_size):
        group = rows[start:start + batch_size]
        T = min(max(len(r[0]) for r in group), block_size)
        t = torch.full((4, len(group), T), 0, dtype=torch.long)
        t[0].fill_(pad_id)
        t[2].fill_(pad_id)
        for b, (x, s, y, m) in enumerate(group):
            n = min(len(x), T)
            for j, arr in enumerate((x, s, y, m)):
                t[j, b, :n] = torch.tensor(arr[:n])
        batches.append((t[0], t[1], t[2], t[3]))
    rng.shuffle(batches)
    return batches
