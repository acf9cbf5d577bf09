"""Training transcripts for the agentic suite: a guess, the real verifier's feedback, the fix it reveals.

An agentic task leaves conventions open that only its tests reveal, so the policy worth learning is
the one an engineer follows: write the function with a guess for each open convention; read the
failing cases; change exactly the conventions those cases show to be wrong; repeat. A transcript
here is that policy run on a training task:

- attempt 0 writes the family's solution for a uniform guess of every convention;
- after a failure, the next attempt fixes each wrong convention whose value changes the outcome of
  a failing case the feedback shows (sut/tasks/agentic/family.py computes outcomes with its plain-Python
  ``reference``; nothing generated runs here); if none does, it fixes one;
- with probability ``bug_share`` an attempt is preceded by a slip (and by another with the same
  probability, and so on): a plausible mistake of its code
  (sut/train/mistakes.py), so the model also learns to recover from its own bugs. A LONG_SHARE of the
  transcripts slip far more often (LONG_BUG_SHARE) and run to 5-8 attempts: the positions and the
  situation (many rejected attempts above) a struggling model reaches at evaluation time.

Every code text is then judged by the real sandbox (``verify_many``): the feedback in a transcript
is what the verifier printed, and a transcript whose verdicts disagree with the plan is dropped.
Policy attempts (guesses and fixes) are training targets; slips are context, never targets.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sut.model import transcript as tr
from sut.agent import BLIND_FEEDBACK
from sut.tasks.agentic.family import Family
from sut.tasks.agentic.record import AgenticTask
from sut.tasks.agentic.suite import FAMILY_BY_NAME
from sut.train.mistakes import plausible_mistake
from sut.model.tokenizer import CodeTokenizer
from verifier.compare import same
from verifier.judge import SHOWN_FAILURES

log = logging.getLogger(__name__)
LONG_SHARE, LONG_BUG_SHARE = 0.2, 0.7


@dataclass
class Attempt:
    code: str
    target: bool            # a policy attempt (under the loss) or a slip (context only)
    passed: bool            # what the plan expects the verifier to say
    feedback: str = ""      # what the verifier said (filled in by ``verify_examples``)


@dataclass
class Example:
    task: AgenticTask
    attempts: list[Attempt]


def _outputs(fam: Family, task: AgenticTask, conv: dict[str, Any]) -> list[Any]:
    return fam.expect(task.params, conv, task.check.inputs)


def plan(task: AgenticTask, rng: random.Random, bug_share: float, max_attempts: int = 8) -> list[Attempt]:
    """The policy's attempts on ``task`` (module doc), ending with the passing one."""
    fam = FAMILY_BY_NAME[task.family]
    convs = fam.convs(task.params["level"])
    truth = task.conventions
    guess = {cv.name: rng.choice(cv.values) for cv in convs}
    attempts: list[Attempt] = []
    while len(attempts) < max_attempts:
        code = fam.solution(task.params, guess)
        while rng.random() < bug_share and len(attempts) + 1 < max_attempts:   # slips, one or more
            slip = plausible_mistake(dataclasses.replace(task, solution=code), rng)
            attempts.append(Attempt(slip, target=False, passed=False))
        right = all(guess[k] == truth[k] for k in guess)
        attempts.append(Attempt(code, target=True, passed=right))
        if right:
            break
        got = _outputs(fam, task, guess)
        failing = [i for i, (g, e) in enumerate(zip(got, task.check.expected)) if not same(g, e)][:SHOWN_FAILURES]
        wrong = [cv.name for cv in convs if guess[cv.name] != truth[cv.name]]
        fix = []
        for name in wrong:   # a wrong convention is revealed when fixing it alone changes a shown failing case
            alt = _outputs(fam, task, {**guess, name: truth[name]})
            if any(not same(alt[i], got[i]) for i in failing):
                fix.append(name)
        for name in fix or wrong[:1]:
            guess[name] = truth[name]
    return attempts


def build_examples(tasks: Sequence[AgenticTask], pool: Any, per_task: int, seed: int,
                   bug_share: float) -> list[Example]:
    """``per_task`` planned transcripts per task, every attempt judged by the real sandbox."""
    examples = []
    for task in tasks:
        rng = random.Random(f"{seed}:{task.id}")
        examples += [Example(task, plan(task, rng, LONG_BUG_SHARE if rng.random() < LONG_SHARE else bug_share))
                     for _ in range(per_task)]
    # one verification per distinct (task, code): a task's transcripts share guesses and fixes
    keys = list(dict.fromkeys((ex.task.id, a.code) for ex in examples for a in ex.attempts))
    check = {ex.task.id: ex.task.check for ex in examples}
    log.info("verifying %d distinct attempts of %d agentic transcripts in the sandbox", len(keys), len(examples))
    verdict = dict(zip(keys, pool.verify_many([(code, check[tid]) for tid, code in keys], progress=True)))
    kept, dropped = [], 0
    for ex in examples:
        ok = True
        for a in ex.attempts:
            v = verdict[ex.task.id, a.code]
            a.feedback = v.feedback
            ok &= v.passed == a.passed and (a.passed or bool(v.feedback))
        if ok:
            kept.append(ex)
        else:
            dropped += 1
    log.info("agentic transcripts: %d kept, %d dropped (a verdict disagreed with the plan)", len(kept), dropped)
    return kept


def transcript(tok: CodeTokenizer, ex: Example, blind: bool = False) -> tr.Piece:
    """The example's token sequence; policy attempts are targets, a slip's tokens before it departs
    from the code that follows it are targets too (what the policy writes there as well).
    ``blind`` replaces every feedback by a bare "failed" (the --feedback none ablation)."""
    seq = tr.prompt_prefix(tok, ex.task.prompt)
    for k, a in enumerate(ex.attempts):
        if k > 0:
            seq.extend(tr.feedback_extension(tok, BLIND_FEEDBACK if blind else ex.attempts[k - 1].feedback, k))
        if a.target:
            seq.extend(tr.code_piece(tok, a.code, k, True))
        else:
            nxt, ids = tok.encode(ex.attempts[k + 1].code), tok.encode(a.code)
            common = next((i for i, (x, y) in enumerate(zip(ids, nxt)) if x != y), min(len(ids), len(nxt)))
            seq.extend(tr.code_piece(tok, a.code, k, common))
    return seq


def tokenizer_corpus(examples: Sequence[Example]):
    """Texts the BPE is learnt from: prompts, every attempt and every feedback."""
    for ex in examples:
        yield ex.task.prompt
        for a in ex.attempts:
            yield a.code
            if a.feedback:
                yield a.feedback
