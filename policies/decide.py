"""Turn a difficulty score into a tier: hard rules, then the cheapest tier likely to suffice.

P(tier k suffices) = sigmoid(ability_k - d). The chosen tier is the cheapest eligible one whose
probability reaches the policy's quality target. `confidence` is the chance that the chosen tier
really clears the target given the scorer's uncertainty; below `min_confidence` the request
goes one tier up before any call is made (low-confidence escalation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from policies.schema import Policy, Tier


class ScoreLike(Protocol):
    # read-only members: classifiers.Score is a NamedTuple, whose fields cannot be assigned
    @property
    def difficulty(self) -> float: ...
    @property
    def uncertainty(self) -> float: ...
    @property
    def n_tokens(self) -> int: ...


@dataclass(frozen=True)
class RequestFacts:
    """What the hard rules look at, besides the score."""

    max_tokens: int | None = None
    needs_tools: bool = False
    needs_vision: bool = False
    pinned_tier: str | None = None


@dataclass(frozen=True)
class Decision:
    """Which tier serves a request, and why."""

    tier: str
    model: str
    difficulty: float
    uncertainty: float
    p_sufficient: dict[str, float]
    confidence: float
    reasons: tuple[str, ...]
    escalations: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = field(default=())
    n_tokens: int = 0
    policy: str = "policy"

    @property
    def escalated(self) -> bool:
        return bool(self.escalations)

    def to_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier, "model": self.model, "difficulty": round(self.difficulty, 4),
            "uncertainty": round(self.uncertainty, 4),
            "p_sufficient": {k: round(v, 4) for k, v in self.p_sufficient.items()},
            "confidence": round(self.confidence, 4), "reasons": list(self.reasons),
            "escalations": list(self.escalations), "fallbacks": list(self.fallbacks),
            "n_tokens": self.n_tokens, "policy": self.policy,
        }

    def __str__(self) -> str:
        p = ", ".join(f"{k}={v:.2f}" for k, v in self.p_sufficient.items())
        return (f"Decision(tier={self.tier!r}, model={self.model!r}, "
                f"difficulty={self.difficulty:.3f}, p_sufficient={{{p}}}, "
                f"confidence={self.confidence:.2f}, reasons={list(self.reasons)})")


class NoEligibleTier(ValueError):
    """No tier can take the request (too long for every context window, or needs a capability)."""


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _ineligible_reason(tier: Tier, score: ScoreLike, facts: RequestFacts) -> str | None:
    if facts.needs_tools and not tier.supports_tools:
        return f"skip {tier.name}: no tool calling"
    if facts.needs_vision and not tier.supports_vision:
        return f"skip {tier.name}: no image input"
    return _context_reason(tier, score, facts)


def _context_reason(tier: Tier, score: ScoreLike, facts: RequestFacts) -> str | None:
    needed = score.n_tokens + (facts.max_tokens or 0)
    if tier.context_window is not None and needed > tier.context_window:
        return f"skip {tier.name}: needs ~{needed} tokens > context window {tier.context_window}"
    return None


def _pick(tiers: list[Tier], p: dict[str, float], target: float) -> tuple[int, bool]:
    """(index of the cheapest tier reaching `target`, True), else (the most able one, False)."""
    index = next((i for i, t in enumerate(tiers) if p[t.name] >= target), None)
    if index is not None:
        return index, True
    return max(range(len(tiers)), key=lambda i: tiers[i].ability), False


def decide(policy: Policy, score: ScoreLike, facts: RequestFacts | None = None) -> Decision:
    """Pick the tier for a scored request under `policy`; raises NoEligibleTier."""
    facts = facts or RequestFacts()
    d, u = float(score.difficulty), float(score.uncertainty)
    p = {t.name: sigmoid(t.ability - d) for t in policy.tiers}
    threshold = math.log(policy.quality_target / (1.0 - policy.quality_target))
    spread = math.sqrt(u * u + policy.decision_noise ** 2)

    def confidence(tier: Tier) -> float:
        return _normal_cdf((tier.ability - d - threshold) / spread)

    def make(tier: Tier, reasons: list[str], escalations: tuple[str, ...] = (),
             fallbacks: tuple[str, ...] = ()) -> Decision:
        return Decision(tier=tier.name, model=tier.model, difficulty=d, uncertainty=u,
                        p_sufficient=p, confidence=confidence(tier), reasons=tuple(reasons),
                        escalations=escalations, fallbacks=fallbacks, n_tokens=score.n_tokens,
                        policy=policy.name)

    if facts.pinned_tier is not None:
        pinned = policy.tier(facts.pinned_tier)
        if pinned is None:
            raise NoEligibleTier(f"unknown tier {facts.pinned_tier!r}")
        # A pin is never escalated, so a prompt over the pinned tier's window could only fail
        # at the provider: say so before any call.
        needed = score.n_tokens + (facts.max_tokens or 0)
        if pinned.context_window is not None and needed > pinned.context_window:
            raise NoEligibleTier(
                f"the pinned tier {pinned.name!r} has a context window of "
                f"{pinned.context_window} tokens and this request needs ~{needed} (prompt + "
                f"max_tokens); pin a tier with a larger window, or send model "
                f"{policy.alias!r} to let the router choose one")
        return make(pinned, [f"pinned to {pinned.name} by the request"])

    reasons: list[str] = []
    eligible: list[Tier] = []
    for tier in policy.tiers:
        why = _ineligible_reason(tier, score, facts)
        if why:
            reasons.append(why)
        else:
            eligible.append(tier)
    if not eligible:
        raise NoEligibleTier("; ".join(reasons))

    target = policy.quality_target
    index, found = _pick(eligible, p, target)
    scored = f"(d={d:.2f}, {policy.scorer} scorer)"  # which scorer made d: the policy's choice
    if not found:
        reasons.append(f"no tier reaches p>={target:g} {scored}; {eligible[index].name} is "
                       "the most able")
    else:
        reasons.append(f"{eligible[index].name} is the cheapest tier with "
                       f"p={p[eligible[index].name]:.2f} >= {target:g} {scored}")
    escalations: list[str] = []
    # The tier the score would have chosen if context windows did not matter: when it was
    # skipped for its window, the request moved up for that (x-tierwise-escalated says so).
    # Such a move is forced, so it does not spend max_escalations (Decider.plan).
    capable = [t for t in policy.tiers if t in eligible or _context_reason(t, score, facts)]
    wanted = capable[_pick(capable, p, target)[0]]
    if wanted not in eligible:
        escalations.append(f"context_window:{wanted.name}->{eligible[index].name}")
    if (policy.max_escalations > 0 and index + 1 < len(eligible)
            and confidence(eligible[index]) < policy.min_confidence):
        low, index = eligible[index], index + 1
        escalations.append(f"low_confidence:{low.name}->{eligible[index].name}")
        reasons.append(f"confidence {confidence(low):.2f} < {policy.min_confidence:g} on "
                       f"{low.name}: one tier up to {eligible[index].name}")
    chosen = eligible[index]
    fallbacks = tuple(t.name for t in eligible[index + 1:])
    return make(chosen, reasons, tuple(escalations), fallbacks)
