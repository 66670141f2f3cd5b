"""Checking that a model's scores are a normalised, causal distribution.

A perplexity is worth exactly as much as the guarantee behind it: that
``score(ids)[i]`` is ``log p(ids[i] | ids[:i])`` under a distribution over the
vocabulary. Three properties are checked, each with the public API only:

causality
    ``score(ids[:m])`` equals ``score(ids)[:m]``: the future does not change
    the past (a model that peeks at ``ids[i + 1]`` fails where it is cut off).
normalisation
    at a position ``i`` the probabilities of every possible next token sum to
    1 within :data:`SUM_TOLERANCE`: from ``next_token_logprobs(ids[:i])`` when
    the model has it, else by scoring ``ids[:i] + [v]`` for every ``v`` (a model
    that peeks at ``ids[i]`` itself fails here: it is sure of every ``v``).
consistency
    ``score(ids)[i]`` equals ``next_token_logprobs(ids[:i])[ids[i]]`` (a score
    that disagrees with the model's own distribution is not that distribution).

Probes sit at seeded positions in the first :data:`SPAN` tokens, so their
cost barely grows with the test text, and one lies anywhere beyond (a model
that cheats only late in the text is caught there). A check that cannot run (a large
vocabulary without ``next_token_logprobs``) is *skipped*, and a model with a
skipped check is reported unverified, never silently trusted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LmevalError, one_line
from .models import LanguageModel

#: How far the probabilities of all next tokens may sum from 1 (absolute).
SUM_TOLERANCE = 1e-6
#: Probes lie in the first SPAN tokens of the text (cost independent of its length).
SPAN = 2048  # tokens; one more probe lies beyond, anywhere in the text
#: Most sequences scored to check normalisation without ``next_token_logprobs``.
SCORE_CALL_BUDGET = 20_000
#: Most tokens scored (all sequences together) for the same, beyond the first SPAN.
SCORE_TOKEN_BUDGET = 5_000_000
#: The largest tolerance a model may declare (float32 kernels need about 1e-5).
MAX_TOLERANCE = 1e-4
#: Positions probed by default (``lmeval compare --verify N``).
DEFAULT_POSITIONS = 8

PASS, FAIL, SKIP, NOT_APPLICABLE = "pass", "fail", "skip", "n/a"


@dataclass(frozen=True)
class Check:
    """One named check and how it ended: ``pass``, ``fail``, ``skip`` (could not run)
    or ``n/a`` (nothing to check: consistency without ``next_token_logprobs``)."""

    name: str
    status: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status in (PASS, NOT_APPLICABLE)


@dataclass(frozen=True)
class Verification:
    """The checks run on one model, and the seconds they took."""

    checks: tuple[Check, ...]
    seconds: float = 0.0

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if c.status == FAIL), None)

    @property
    def verified(self) -> bool:
        """True only when every check ran and passed."""
        return all(c.passed for c in self.checks)

    @property
    def error(self) -> str | None:
        """Why the model is not verified (the first failure, else the first skip)."""
        for status in (FAIL, SKIP):
            check = next((c for c in self.checks if c.status == status), None)
            if check is not None:
                return f"{check.name}: {check.detail}"
        return None


def read_only(ids: np.ndarray) -> np.ndarray:
    """``ids`` as an array that cannot be written: a model may not change what it is
    given (the evaluator's test ids, from which the counts and the checks are made).

    The ids are kept in an immutable ``bytes`` object, which no one can make
    writable, not through the array's ``base`` either; what is kept so already is
    handed out as a view, not copied again (the probes of a text of millions of
    tokens hand out most of it, many times over). Integer ids keep their type
    (the tokenizer's int32: half the memory of int64)."""
    ids = _ids(ids)
    base = ids
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, bytes):
        return ids.view()
    return np.frombuffer(ids.tobytes(), dtype=ids.dtype)


def _ids(ids: np.ndarray) -> np.ndarray:
    """``ids`` as an array of integers (int64 unless they are integers already)."""
    ids = np.asarray(ids)
    return ids if ids.dtype.kind in "iu" else ids.astype(np.int64)


class ContractViolation(LmevalError):
    """A model's answers break the contract of :class:`lmeval.LanguageModel`; the
    message is the one-line reason a failed row shows."""


def tolerance(model: LanguageModel) -> float:
    """The absolute tolerance (nats) for one log-probability computed two ways.

    The model's own ``tolerance``, but never above :data:`MAX_TOLERANCE`: a
    model cannot declare itself exempt (``tolerance = inf``) or widen the checks
    until a doubled probability passes.
    """
    value = float(getattr(model, "tolerance", 1e-9))
    if not value >= 0:  # NaN, negative
        return 1e-9
    return min(value, MAX_TOLERANCE)


def probe_positions(n: int, count: int, seed: int = 0, span: int = SPAN) -> list[int]:
    """``count`` distinct positions of a text of ``n`` tokens: 0 first, then seeded ones
    in ``[1, span)``, and, when the text is longer than ``span``, the last one anywhere
    beyond it (so a model cannot cheat only where the cheap probes never look)."""
    limit = min(n, span)
    if limit <= 0 or count <= 0:
        return []
    rng = np.random.default_rng(seed)
    far = [int(rng.integers(span, n))] if n > span and count > 1 else []
    near = min(count - 1 - len(far), limit - 1)
    rest = rng.choice(np.arange(1, limit), size=near, replace=False)
    return [0, *sorted(int(i) for i in rest), *far]


def as_logprobs(
    values: object, expected: int, what: str, tol: float, per: str = "token"
) -> np.ndarray:
    """``values`` as float64 log-probabilities, if they are ``expected`` of them (one
    per ``per``), none NaN and none above ``tol``; else :class:`ContractViolation`."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != expected:
        raise ContractViolation(
            f"{what} returned shape {arr.shape}, expected one value per {per} ({expected})"
        )
    try:
        arr = arr.astype(np.float64, copy=False)  # the caller copies what it keeps
    except (TypeError, ValueError):
        raise ContractViolation(f"{what} returned {arr.dtype} values, not numbers") from None
    if np.isnan(arr).any():
        raise ContractViolation(f"{what} returned NaN at {per} {int(np.argmax(np.isnan(arr)))}")
    if (arr > tol).any():
        i = int(np.argmax(arr > tol))
        raise ContractViolation(f"{what} returned log p = {arr[i]:.4g} > 0 at {per} {i}")
    return arr


def _run(name: str, body) -> Check:
    """Run one check; a violation or an exception of the model fails it."""
    try:
        detail = body()
    except ContractViolation as exc:
        return Check(name, FAIL, str(exc))
    except Exception as exc:  # NotImplementedError too: absent methods are handled inside
        return Check(name, FAIL, f"raised {one_line(exc)}")
    if isinstance(detail, Check):
        return detail
    return Check(name, PASS, detail or "")


def _differs(a: np.ndarray, b: np.ndarray, tol: float) -> int | None:
    """The first index where ``a`` and ``b`` differ by more than ``tol`` (inf == inf)."""
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinities compare equal above
        same = (a == b) | (np.abs(a - b) <= tol)
    bad = np.flatnonzero(~same)
    return int(bad[0]) if len(bad) else None


def check_causality(
    model: LanguageModel,
    ids: np.ndarray,
    prefixes: Sequence[int],
    full: np.ndarray | None = None,
    *,
    change_future: bool = False,
    seed: int = 0,
) -> Check:
    """``score(ids[:m]) == score(ids)[:m]`` for each ``m``; with ``change_future``,
    also with the tokens after ``m`` replaced by others."""
    tol = tolerance(model)
    ids = _ids(ids)
    name = "causality (future changed)" if change_future else "causality"

    def body() -> str:
        whole = _scores(model, ids, full, tol)
        rng = np.random.default_rng(seed)
        tested = [m for m in prefixes if 0 < m <= len(ids)]
        for m in tested:
            if change_future:
                tail_len = min(len(ids) - m, 16) or 1
                tail = rng.integers(0, len(model.vocab), size=tail_len)
                if m < len(ids):
                    tail[tail == ids[m : m + tail_len]] += 1
                    tail %= len(model.vocab)
                seq = np.concatenate([ids[:m], tail])
                part = as_logprobs(model.score(read_only(seq)), len(seq), "score", tol)[:m]
                reference = whole[:m] if m <= len(whole) else whole
            else:
                part = as_logprobs(model.score(read_only(ids[:m])), m, "score", tol)
                reference = whole[:m]
            if (i := _differs(part, reference, tol)) is not None:
                how = "changing the tokens after" if change_future else "cutting the text after"
                raise ContractViolation(
                    f"{how} token {m - 1} changes log p at token {i}: "
                    f"{reference[i]:.6g} became {part[i]:.6g} (the model looks ahead)"
                )
        return f"{len(tested)} prefixes agree within {tol:g}"

    return _run(name, body)


def _sum_message(i: int, log_total: float, tol: float) -> str:
    total = float(np.exp(log_total)) if np.isfinite(log_total) else 0.0
    if abs(total - 1) >= 1e-3:
        return f"probabilities at token {i} sum to {total:.4g}, not 1"
    sign = "+" if total > 1 else "-"
    return (
        f"probabilities at token {i} sum to 1 {sign} {abs(total - 1):.3g}, more than {tol:g} "
        "from 1 (float32 arithmetic? declare the model's tolerance)"
    )


def _distribution(
    model: LanguageModel, context: np.ndarray, tol: float, answered: bool, at: int
) -> np.ndarray:
    """``next_token_logprobs(context)``, checked; "not implemented" after it has
    answered is a lie, not an absence."""
    try:
        raw = model.next_token_logprobs(read_only(context))
    except NotImplementedError:
        if answered:
            raise ContractViolation(
                f"next_token_logprobs raised NotImplementedError at token {at} after answering "
                "at earlier tokens"
            ) from None
        raise
    # a copy: a model may answer in a buffer it reuses for the next call
    return as_logprobs(raw, len(model.vocab), "next_token_logprobs", tol, "vocabulary id").copy()


def _scores(model: LanguageModel, ids: np.ndarray, full: np.ndarray | None, tol: float):
    """The scores of the whole text: ``full`` when the caller has them, else computed."""
    if full is not None:
        return full
    return as_logprobs(model.score(read_only(ids)), len(ids), "score", tol)


def _logsumexp(arr: np.ndarray) -> float:
    top = float(np.max(arr))
    if not np.isfinite(top):
        return top
    return top + float(np.log(np.sum(np.exp(arr - top))))


def check_normalisation(
    model: LanguageModel,
    ids: np.ndarray,
    positions: Sequence[int],
    *,
    use_score: bool = False,
    budget: int = SCORE_CALL_BUDGET,
) -> Check:
    """At each position, the next-token probabilities sum to 1.

    From ``next_token_logprobs`` unless the model lacks it or ``use_score``:
    then from ``score(ids[:i] + [v])[i]`` for every ``v``, at as many
    positions as ``budget`` scored sequences allow (the detail says how many).
    """
    tol = max(SUM_TOLERANCE, tolerance(model))
    ids = _ids(ids)
    size = len(model.vocab)
    name = "normalisation (from score)" if use_score else "normalisation"

    def by_ntl() -> str:
        for n, i in enumerate(positions):
            logp = _distribution(model, ids[:i], tol, answered=n > 0, at=i)
            log_total = _logsumexp(logp)
            if not abs(log_total) <= tol:
                raise ContractViolation(_sum_message(i, log_total, tol))
        return f"{len(positions)} positions sum to 1 within {tol:g}"

    def by_score() -> str | Check:
        near = sorted(p for p in positions if p < SPAN)
        far = [p for p in positions if p >= SPAN]
        fit = max(0, min(len(near), budget // max(size, 1)))
        if fit == 0:
            return Check(
                name,
                SKIP,
                f"a vocabulary of {size:,} tokens is too large to check without "
                "next_token_logprobs (by scoring every next token)",
            )
        if far and size * (far[0] + 1) > SCORE_TOKEN_BUDGET:
            return Check(
                name,
                SKIP,
                f"token {far[0]:,} is too far to check without next_token_logprobs "
                f"(scoring every next token there reads {size * (far[0] + 1):,} tokens)",
            )
        chosen = near[:fit] + far
        for i in chosen:
            logp = np.empty(size)
            for v in range(size):
                seq = np.append(ids[:i], v)
                logp[v] = as_logprobs(model.score(read_only(seq)), i + 1, "score", tol)[i]
            log_total = _logsumexp(logp)
            if not abs(log_total) <= tol:
                raise ContractViolation(_sum_message(i, log_total, tol))
        done = len(chosen)
        fewer = f" (of {len(positions)}: vocabulary {size:,})" if done < len(positions) else ""
        return f"{done} positions{fewer} sum to 1 within {tol:g}, by scoring every next token"

    def body() -> str | Check:
        if use_score:
            return by_score()
        try:
            return by_ntl()
        except NotImplementedError:
            return by_score()

    return _run(name, body)


def check_consistency(
    model: LanguageModel, ids: np.ndarray, positions: Sequence[int], full: np.ndarray | None = None
) -> Check:
    """``score(ids)[i] == next_token_logprobs(ids[:i])[ids[i]]`` at each position."""
    tol = tolerance(model)
    ids = _ids(ids)

    def body() -> str:
        whole = _scores(model, ids, full, tol)
        answered = False
        for i in positions:
            if i >= len(ids):
                continue
            try:
                logp = _distribution(model, ids[:i], tol, answered=answered, at=i)
            except NotImplementedError:
                return Check("consistency", NOT_APPLICABLE, "no next_token_logprobs to agree with")
            answered = True
            expected = logp[ids[i]]
            if _differs(np.array([whole[i]]), np.array([expected]), tol) is not None:
                raise ContractViolation(
                    f"score gives log p = {whole[i]:.6g} at token {i} but "
                    f"next_token_logprobs gives {expected:.6g}"
                )
        return f"{len(positions)} positions agree within {tol:g}"

    return _run("consistency", body)


#: Bytes of ``next_token_logprobs`` answers :class:`_Remembered` keeps at most: all of
#: them for a vocabulary of up to ~100,000 tokens, few for one of millions of words,
#: whose every distribution is MBs (and recomputing one costs little beside that).
REMEMBER_BYTES = 1 << 24


class _Remembered:
    """The model, with ``next_token_logprobs`` answers kept (up to
    :data:`REMEMBER_BYTES`): normalisation and consistency ask for the same
    contexts, and a distribution can cost a few ms. An answer not kept is asked
    for again, and must be the same one: a model may not pass normalisation with
    one distribution and consistency with another."""

    def __init__(self, model: LanguageModel) -> None:
        self._model = model
        self._answers: dict[tuple[int, bytes], np.ndarray] = {}
        self._digests: dict[tuple[int, bytes], bytes] = {}
        self._kept = 0

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        # keyed by a digest, not the ids themselves: a far probe's context is most of
        # the text, and keeping a copy of it per probe would cost 8 bytes per token
        context = np.ascontiguousarray(_ids(context_ids))
        key = (len(context), hashlib.blake2b(memoryview(context).cast("B")).digest())
        answer = self._answers.get(key)
        if answer is None:
            answer = np.array(self._model.next_token_logprobs(context_ids))
            if self._kept + answer.nbytes <= REMEMBER_BYTES:
                self._answers[key] = answer
                self._kept += answer.nbytes
                return answer
            # not kept: its digest is, to hold the next answer after it to this one
            digest = hashlib.blake2b(answer.tobytes()).digest()
            if self._digests.setdefault(key, digest) != digest:
                raise ContractViolation(
                    f"next_token_logprobs gave two different distributions after the same "
                    f"{len(context)} tokens"
                )
        return answer


def _has_distribution(model: Any, ids: np.ndarray) -> bool:
    try:
        model.next_token_logprobs(read_only(ids[:0]))
    except NotImplementedError:
        return False
    except Exception:
        return True  # it exists and fails: normalisation will say how
    return True


def verify_model(
    model: LanguageModel,
    ids: np.ndarray,
    full: np.ndarray | None = None,
    *,
    positions: int = DEFAULT_POSITIONS,
    seed: int = 0,
) -> Verification:
    """The three checks at ``positions`` seeded probes of ``ids`` (``full``: its scores).

    What ``lmeval compare`` runs on every row before it is ranked.
    """
    start = time.perf_counter()
    ids = _ids(ids)
    probes = probe_positions(len(ids), positions, seed)
    remembered: Any = _Remembered(model)
    # Cutting the text far out costs a scoring of all of it: with a distribution,
    # consistency there already catches a score that looks ahead, so cut only near.
    cuts = probes if not _has_distribution(remembered, ids) else [i for i in probes if i < SPAN]
    prefixes = [i + 1 for i in cuts]
    checks = (
        check_causality(model, ids, prefixes, full),
        check_normalisation(remembered, ids, probes),
        check_consistency(remembered, ids, probes, full),
    )
    return Verification(checks, time.perf_counter() - start)
