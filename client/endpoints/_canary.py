"""Canary rollouts, the pure part: evidence in, a judgment out; the rollout's state and its tags.

Each step of a rollout is judged on evidence gathered over one window, per served entity, the
challenger against the champion over the same window (:class:`Evidence`). The checks, in order:

1. **samples**: both have at least ``min_requests`` requests, else the step *waits* (the other
   checks are not worth reading on fewer);
2. **error rate**: the challenger's is at most the champion's + ``max_error_rate_increase``;
3. **latency p99**: the challenger's is at most the champion's x ``max_p99_ratio`` + ``p99_slack_ms``;
4. **thumbs-up rate** (when there is feedback): at least the champion's - ``max_thumbs_up_drop``,
   once both have ``min_feedback`` votes, else the step waits;
5. **accuracy / RMSE** (when there are labels): no worse than the champion's by more than
   ``max_label_metric_drop`` of it, once both have ``min_labels`` labels, else the step waits;
6. **drift**: no drift or data-quality rule broken on the challenger that the champion does not
   break too (the same traffic reaches both, so what both break is the traffic's doing, not the model's).

A judgment *passes* (next step), *fails* (counted; ``threshold`` failures roll back, as Flagger's
``threshold``) or *waits* (judged again after another interval, until the step's ``deadline``,
which rolls back). Nothing here does I/O; ``_rollout`` drives it against a workspace.

Example::

    champion = Evidence(requests=900, errors=9, p99_ms=41.0)
    challenger = Evidence(requests=100, errors=20, p99_ms=44.0)
    judge(Policy(), champion, challenger).verdict        # "fail": error rate 20.0 % > 1.0 % + 1.0 pt
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "LOG_TAGS",
    "STATE_TAG",
    "Check",
    "Evidence",
    "Judgment",
    "Policy",
    "RolloutState",
    "judge",
    "split",
]

Verdict = Literal["pass", "fail", "wait"]
Phase = Literal["running", "promoting", "rolling_back", "promoted", "rolled_back", "aborted"]
#: Phases a rollout is still in: another rollout on the endpoint is refused.
ACTIVE_PHASES = ("running", "promoting", "rolling_back")

#: The endpoint tag holding the state, and those holding the latest decisions (newest first).
STATE_TAG = "rollout_state"
LOG_TAGS = tuple(f"rollout_log_{i}" for i in range(1, 9))
#: Longest tag value written (a workspace's tag values are short strings).
MAX_TAG_VALUE = 255


@dataclass(frozen=True)
class Policy:
    """The checks' thresholds and the plan (the ``rollout:`` block, flags applied)."""

    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval: float = 300.0
    deadline: float = 3600.0
    threshold: int = 1
    min_requests: int = 100
    min_feedback: int = 30
    min_labels: int = 30
    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    p99_slack_ms: float = 10.0
    max_thumbs_up_drop: float = 0.05
    max_label_metric_drop: float = 0.05
    check_drift: bool = True
    alias: str = "champion"
    old_entity: Literal["remove", "keep"] = "remove"


@dataclass(frozen=True)
class Evidence:
    """What one served entity did over a window (from client.monitoring's records)."""

    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None
    feedback: int = 0
    thumbs_up: int = 0
    labels: int = 0
    #: ``("accuracy", 0.93)`` or ``("rmse", 1.7)`` over the labelled records
    label_metric: tuple[str, float] | None = None
    #: the drift / data-quality rules this entity's records break (e.g. ``"drift:petal width"``)
    broken_rules: tuple[str, ...] = ()

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def thumbs_up_rate(self) -> float | None:
        return self.thumbs_up / self.feedback if self.feedback else None


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Literal["pass", "fail", "wait", "skip"]
    #: the figures, e.g. "challenger 20.0 % vs champion 0.0 % (limit 1.0 %)"
    detail: str


@dataclass(frozen=True)
class Judgment:
    verdict: Verdict
    checks: tuple[Check, ...]

    def text(self) -> str:
        return "; ".join(f"{c.name} {c.outcome.upper()}: {c.detail}" for c in self.checks)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} ms"


def _samples(name: str, what: str, minimum: int, champ: int, chal: int) -> Check | None:
    """``wait`` while either side has fewer than ``minimum`` (None when there is nothing at all)."""
    if champ == 0 and chal == 0:
        return Check(name, "skip", f"no {what} in the window")
    if champ < minimum or chal < minimum:
        return Check(name, "wait", f"{what}: challenger {chal}, champion {champ} (need {minimum} each)")
    return None


def judge(policy: Policy, champion: Evidence, challenger: Evidence) -> Judgment:
    """Judge one window: challenger against champion (see the module docstring)."""
    checks: list[Check] = []
    need = policy.min_requests
    if champion.requests < need or challenger.requests < need:
        checks.append(Check("samples", "wait", f"requests: challenger {challenger.requests}, "
                                               f"champion {champion.requests} (need {need} each)"))
        return Judgment("wait", tuple(checks))
    checks.append(Check("samples", "pass", f"requests: challenger {challenger.requests}, champion {champion.requests}"))

    limit = champion.error_rate + policy.max_error_rate_increase
    checks.append(Check(
        "error rate", "pass" if challenger.error_rate <= limit + 1e-12 else "fail",
        f"challenger {_pct(challenger.error_rate)} ({challenger.errors}/{challenger.requests}) vs champion "
        f"{_pct(champion.error_rate)} ({champion.errors}/{champion.requests}), limit {_pct(limit)}",
    ))

    if champion.p99_ms is None or challenger.p99_ms is None:
        checks.append(Check("latency p99", "skip", "no latency recorded"))
    else:
        p99_limit = champion.p99_ms * policy.max_p99_ratio + policy.p99_slack_ms
        checks.append(Check(
            "latency p99", "pass" if challenger.p99_ms <= p99_limit else "fail",
            f"challenger {_ms(challenger.p99_ms)} vs champion {_ms(champion.p99_ms)}, limit {_ms(p99_limit)} "
            f"({policy.max_p99_ratio:g}x + {policy.p99_slack_ms:g} ms)",
        ))

    waiting = _samples("thumbs-up rate", "votes", policy.min_feedback, champion.feedback, challenger.feedback)
    if waiting is not None:
        checks.append(waiting)
    else:
        chal_rate, champ_rate = challenger.thumbs_up_rate or 0.0, champion.thumbs_up_rate or 0.0
        floor = champ_rate - policy.max_thumbs_up_drop
        checks.append(Check(
            "thumbs-up rate", "pass" if chal_rate >= floor - 1e-12 else "fail",
            f"challenger {_pct(chal_rate)} of {challenger.feedback} vs champion {_pct(champ_rate)} of "
            f"{champion.feedback}, floor {_pct(floor)}",
        ))

    checks.append(_label_check(policy, champion, challenger))

    if policy.check_drift:
        alone = sorted(set(challenger.broken_rules) - set(champion.broken_rules))
        shared = sorted(set(challenger.broken_rules) & set(champion.broken_rules))
        note = f" (both: {', '.join(shared)})" if shared else ""
        checks.append(Check("drift", "fail" if alone else "pass",
                            (f"challenger alone breaks {', '.join(alone)}" if alone else "no rule broken by "
                             "the challenger alone") + note))

    outcomes = {c.outcome for c in checks}
    verdict: Verdict = "fail" if "fail" in outcomes else "wait" if "wait" in outcomes else "pass"
    return Judgment(verdict, tuple(checks))


def _label_check(policy: Policy, champion: Evidence, challenger: Evidence) -> Check:
    waiting = _samples("label metric", "labels", policy.min_labels, champion.labels, challenger.labels)
    if waiting is not None:
        return waiting
    if champion.label_metric is None or challenger.label_metric is None:
        return Check("label metric", "skip", "labels without a metric")
    name, champ = champion.label_metric
    _, chal = challenger.label_metric
    if name == "rmse":
        limit = champ * (1 + policy.max_label_metric_drop)
        ok, bound = chal <= limit + 1e-12, f"ceiling {limit:.4g}"
    else:
        limit = champ * (1 - policy.max_label_metric_drop)
        ok, bound = chal >= limit - 1e-12, f"floor {limit:.4g}"
    return Check("label metric", "pass" if ok else "fail",
                 f"{name}: challenger {chal:.4g} ({challenger.labels} labels) vs champion {champ:.4g} "
                 f"({champion.labels}), {bound}")


def split(weight: int, traffic: Mapping[str, int], champion: str, challenger: str) -> dict[str, int]:
    """The traffic with the challenger at ``weight`` % of the champion+challenger pool (other
    entities keep theirs); the champion gets the rest of the pool."""
    pool = traffic.get(champion, 0) + traffic.get(challenger, 0)
    out = dict(traffic)
    out[challenger] = round(pool * weight / 100)
    out[champion] = pool - out[challenger]
    return out


# --- the state, kept on the endpoint's tags -------------------------------------------------------


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout is; encoded in one tag (``STATE_TAG``) as ``key=value;...``.

    ``step`` indexes ``steps``; ``-1`` before the first. ``failed`` counts failed judgments.
    ``owner`` is the run that holds the rollout: a run that finds another owner stops.
    """

    owner: str
    challenger: str
    champion: str
    version: str
    steps: tuple[int, ...]
    phase: Phase = "running"
    step: int = -1
    failed: int = 0
    started: float = 0.0
    step_started: float = 0.0
    window_start: float = 0.0
    updated: float = 0.0
    reason: str = ""
    log: tuple[str, ...] = field(default=(), compare=False)

    @property
    def weight(self) -> int:
        return self.steps[self.step] if self.step >= 0 else 0

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    def encode(self) -> str:
        fields = [("owner", self.owner), ("phase", self.phase), ("challenger", self.challenger),
                  ("champion", self.champion), ("version", self.version),
                  ("steps", ",".join(map(str, self.steps))), ("step", str(self.step)), ("failed", str(self.failed)),
                  ("started", f"{self.started:.3f}"), ("step_started", f"{self.step_started:.3f}"),
                  ("window_start", f"{self.window_start:.3f}"), ("updated", f"{self.updated:.3f}"),
                  ("reason", self.reason.replace(";", ",").replace("=", ":")[:60])]
        return ";".join(f"{k}={v}" for k, v in fields)[:MAX_TAG_VALUE]

    @classmethod
    def decode(cls, text: str, log: Sequence[str] = ()) -> RolloutState:
        """Parse :meth:`encode`'s form; ``ValueError`` names what is wrong."""
        try:
            kv = dict(part.split("=", 1) for part in text.split(";") if part)
            phase = kv["phase"]
            if phase not in ("running", "promoting", "rolling_back", "promoted", "rolled_back", "aborted"):
                raise ValueError(f"unknown phase {phase!r}")
            return cls(owner=kv["owner"], challenger=kv["challenger"], champion=kv["champion"],
                       version=kv["version"], steps=tuple(int(s) for s in kv["steps"].split(",")),
                       phase=phase,  # type: ignore[arg-type]
                       step=int(kv["step"]), failed=int(kv["failed"]), started=float(kv["started"]),
                       step_started=float(kv["step_started"]), window_start=float(kv["window_start"]),
                       updated=float(kv["updated"]), reason=kv.get("reason", ""), log=tuple(log))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"unreadable rollout state tag {text[:80]!r}: {exc}") from None

    def logged(self, now: float, line: str) -> RolloutState:
        """This state with ``line`` (stamped) as the newest decision."""
        entry = f"{_iso(now)} {line}"[:MAX_TAG_VALUE]
        return replace(self, updated=now, log=(entry, *self.log)[: len(LOG_TAGS)])

    def tags(self) -> dict[str, str]:
        """Every tag this state writes: the state and one per logged decision."""
        out = {STATE_TAG: self.encode()}
        out.update({key: line for key, line in zip(LOG_TAGS, self.log, strict=False)})
        return out

    def text(self) -> str:
        """The status display (``predictor rollout status``)."""
        steps = " -> ".join(f"[{s}%]" if i == self.step else f"{s}%" for i, s in enumerate(self.steps))
        lines = [
            f"rollout of {self.challenger} (version {self.version}) against {self.champion}: {self.phase}"
            + (f" ({self.reason})" if self.reason else ""),
            f"  steps: {steps}; challenger at {self.weight}%",
            f"  started {_iso(self.started)}, step since {_iso(self.step_started)}, "
            f"last update {_iso(self.updated)}; failed judgments: {self.failed}; run {self.owner}",
        ]
        if self.log:
            lines.append("  decisions (newest first):")
            lines += [f"    {line}" for line in self.log]
        return "\n".join(lines)


def state_from_tags(tags: Mapping[str, str]) -> RolloutState | None:
    """The rollout state an endpoint's tags hold, or None when it has none."""
    if STATE_TAG not in tags:
        return None
    return RolloutState.decode(tags[STATE_TAG], [tags[k] for k in LOG_TAGS if k in tags])


def finite(x: float | None) -> float | None:
    """NaN (pandas' empty quantile) as None."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
