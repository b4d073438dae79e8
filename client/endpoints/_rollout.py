"""Canary rollouts against a workspace: move the challenger's traffic step by step, judge each step
on evidence (``_canary.judge``), roll back or promote. The state lives on the endpoint's tags.

Crash safety: every move is written to the tags (the intent) before the endpoint is changed, and
a resumed run first brings the endpoint to what the tags say (:func:`_reconcile`), so a crash or
Ctrl-C at any point leaves either the old or the new step, never a mix; ``resume=True`` carries
on, :func:`abort_rollout` rolls back. A run that finds the tags owned by another run stops, and a
rollout is refused while another is active on the endpoint.

Example::

    from client.endpoints import load_config, registry_alias_setter, registry_resolver, resolve, rollout
    cfg = load_config("serving_configs/iris-ab.yaml")
    state = rollout(w, resolve(cfg, registry_resolver()), "challenger", policy_of(cfg.rollout),
                    evidence=my_evidence, set_alias=registry_alias_setter())
    state.phase          # "promoted" or "rolled_back"
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from ._canary import LOG_TAGS, Evidence, Judgment, Policy, RolloutState, judge, split, state_from_tags
from ._config import DesiredEndpoint, RolloutSpec
from ._workspace import EndpointOperationError

__all__ = [
    "EvidenceSource",
    "RolloutError",
    "abort_rollout",
    "plan_rollout",
    "policy_of",
    "rollout",
    "rollout_status",
]

logger = logging.getLogger(__name__)

#: ``evidence(endpoint, served_entities, start, end)`` -> :class:`Evidence` per served entity.
EvidenceSource = Callable[[str, Sequence[str], datetime, datetime], Mapping[str, Evidence]]
#: ``set_alias(model, alias, version)``
AliasSetter = Callable[[str, str, str], None]


class RolloutError(EndpointOperationError):
    """A rollout cannot start, resume or go on (another is active, the run lost its endpoint...)."""


def policy_of(spec: RolloutSpec | None, **overrides: Any) -> Policy:
    """The :class:`Policy` of a ``rollout:`` block (defaults without one); ``None`` overrides are ignored."""
    base = {f.name: getattr(spec, f.name) for f in fields(Policy)} if spec is not None else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    if "steps" in base:
        base["steps"] = tuple(base["steps"])
    return Policy(**base)


class Ops(Protocol):
    """What a rollout needs from a workspace (the tests give an in-memory one)."""

    def read(self) -> tuple[DesiredEndpoint, dict[str, str]]: ...
    def write_tags(self, add: Mapping[str, str], delete: Sequence[str]) -> None: ...
    def set_config(self, desired: DesiredEndpoint) -> None: ...
    def set_alias(self, model: str, alias: str, version: str) -> None: ...


@dataclass
class _Run:
    ops: Ops
    desired: DesiredEndpoint
    policy: Policy
    evidence: EvidenceSource
    out: Callable[[str], None]
    now: Callable[[], float]
    sleep: Callable[[float], None]
    state: RolloutState

    # -- the state ------------------------------------------------------------------------------

    def save(self, line: str | None = None, *, claim: bool = False, **changes: Any) -> None:
        """Write the state (after checking this run still owns it, unless it ``claim``s it), with
        ``line`` as a decision."""
        _, tags = self.ops.read()
        found = state_from_tags(tags)
        if not claim and found is not None and found.owner != self.state.owner:
            raise RolloutError(f"endpoint {self.desired.name}: the rollout was taken over by run {found.owner} "
                               f"({found.phase}); this run {self.state.owner} stops")
        state = replace(self.state, updated=self.now(), **changes)
        if line is not None:
            self.out(line)
            state = state.logged(self.now(), line)
        new = state.tags()
        self.ops.write_tags(new, [k for k in LOG_TAGS if k in tags and k not in new])
        self.state = state

    # -- the endpoint ---------------------------------------------------------------------------

    def target(self) -> DesiredEndpoint:
        """The endpoint as the state says it should be now."""
        s, d = self.state, self.desired
        if s.phase in ("promoting", "promoted"):
            traffic = split(100, d.traffic, s.champion, s.challenger)
            entities = dict(d.entities)
            if self.policy.old_entity == "remove":
                traffic.pop(s.champion)
                entities.pop(s.champion)
            return replace(d, entities=entities, traffic=traffic)
        weight = s.weight if s.phase == "running" else 0
        return replace(d, traffic=split(weight, d.traffic, s.champion, s.challenger))

    def reconcile(self) -> None:
        """Bring the endpoint to :meth:`target` (nothing sent when it is there already)."""
        cur, _ = self.ops.read()
        want = self.target()
        if cur.entities != want.entities or {k: v for k, v in cur.traffic.items() if v} != {
            k: v for k, v in want.traffic.items() if v
        }:
            routes = ", ".join(f"{k} {v}%" for k, v in sorted(want.traffic.items()))
            self.out(f"  endpoint {want.name}: traffic -> {routes}")
            self.ops.set_config(want)

    # -- the loop -------------------------------------------------------------------------------

    def advance(self) -> None:
        nxt = self.state.step + 1
        weight = self.state.steps[nxt]
        if weight == 100:
            self.save(f"promote: {self.state.challenger} passed every step; 100% and @{self.policy.alias}",
                      phase="promoting", step=nxt)
            return
        self.save(f"step {nxt + 1}/{len(self.state.steps)}: {self.state.challenger} -> {weight}%", step=nxt,
                  step_started=self.now(), window_start=self.now())
        self.reconcile()
        self.save(step_started=self.now(), window_start=self.now())  # the window opens once traffic moved

    def judge_step(self) -> None:
        s, p = self.state, self.policy
        self.sleep(p.interval)
        now = self.now()
        ev = self.evidence(self.desired.name, [s.champion, s.challenger], _dt(s.window_start), _dt(now))
        j: Judgment = judge(p, ev.get(s.champion, Evidence()), ev.get(s.challenger, Evidence()))
        where = f"step {s.step + 1} ({s.weight}%)"
        if j.verdict == "pass":
            self.save(f"{where}: PASS: {j.text()}")
            self.advance()
        elif j.verdict == "fail":
            failed = s.failed + 1
            if failed >= p.threshold:
                self.save(f"{where}: FAIL ({failed}/{p.threshold}), rolling back: {j.text()}",
                          failed=failed, phase="rolling_back", reason=f"failed at {s.weight}%")
            else:
                self.save(f"{where}: FAIL ({failed}/{p.threshold}), judged again: {j.text()}",
                          failed=failed, window_start=now)
        elif now - s.step_started >= p.deadline:
            self.save(f"{where}: deadline ({p.deadline:g}s) passed waiting for samples, rolling back: {j.text()}",
                      phase="rolling_back", reason=f"deadline at {s.weight}%")
        else:
            self.out(f"{where}: WAIT: {j.text()}")

    def finish(self) -> None:
        s = self.state
        if s.phase == "promoting":
            self.reconcile()
            d = self.desired.entities[s.challenger]
            self.ops.set_alias(d.entity_name, self.policy.alias, s.version)
            kept = "kept at 0%" if self.policy.old_entity == "keep" else "removed"
            self.save(f"promoted: {s.challenger} serves 100%; {d.entity_name}@{self.policy.alias} -> version "
                      f"{s.version}; {s.champion} {kept}", phase="promoted")
        elif s.phase == "rolling_back":
            self.reconcile()
            self.save(f"rolled back: {s.challenger} at 0%, {s.champion} serves ({s.reason})",
                      phase="aborted" if s.reason.startswith("aborted") else "rolled_back")

    def run(self) -> RolloutState:
        if self.state.phase == "running":
            if self.state.step < 0:
                self.advance()
            else:
                self.reconcile()
                self.save(window_start=self.now())  # a resumed step judges a fresh window
        while self.state.phase == "running":
            self.judge_step()
        self.finish()
        return self.state


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _champion_of(desired: DesiredEndpoint, challenger: str, policy_champion: str | None) -> str:
    if challenger not in desired.entities:
        raise RolloutError(f"endpoint {desired.name} has no served entity {challenger!r} "
                           f"(have: {', '.join(desired.entities)})")
    if policy_champion is not None:
        if policy_champion == challenger:
            raise RolloutError(f"the challenger {challenger!r} cannot be its own champion")
        return policy_champion
    others = [n for n in desired.entities if n != challenger and desired.traffic.get(n, 0) > 0]
    if len(others) != 1:
        raise RolloutError(f"endpoint {desired.name}: cannot tell the champion among {', '.join(others) or 'none'}; "
                           "name it in the file (rollout: champion: NAME)")
    return others[0]


def start(ops: Ops, desired: DesiredEndpoint, challenger: str, policy: Policy, *, champion: str | None = None,
          resume: bool = False, now: Callable[[], float] = time.time) -> RolloutState:
    """The state a run begins with: a new rollout, or (``resume``) the active one, taken over."""
    _, tags = ops.read()
    found = state_from_tags(tags)
    owner = secrets.token_hex(4)
    if found is not None and found.active:
        if not resume:
            raise RolloutError(
                f"endpoint {desired.name}: a rollout of {found.challenger} is already {found.phase} "
                f"(step {found.step + 1}, {found.weight}%, run {found.owner}); resume it with --resume, or roll "
                f"it back with 'predictor rollout abort {desired.name}'"
            )
        if found.challenger != challenger:
            raise RolloutError(
                f"endpoint {desired.name}: the active rollout is of {found.challenger}, not {challenger}")
        return replace(found, owner=owner)
    if resume:
        raise RolloutError(f"endpoint {desired.name}: no rollout in progress to resume")
    champ = _champion_of(desired, challenger, champion)
    t = now()
    return RolloutState(owner=owner, challenger=challenger, champion=champ,
                        version=desired.entities[challenger].entity_version, steps=policy.steps,
                        started=t, step_started=t, window_start=t, updated=t)


def run_rollout(ops: Ops, desired: DesiredEndpoint, challenger: str, policy: Policy, evidence: EvidenceSource, *,
                champion: str | None = None, resume: bool = False, out: Callable[[str], None] = print,
                now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> RolloutState:
    """Run (or resume) a rollout to its end against ``ops``; every decision goes to ``out``."""
    state = start(ops, desired, challenger, policy, champion=champion, resume=resume, now=now)
    run = _Run(ops, desired, policy, evidence, out, now, sleep, state)
    first = "resumed" if resume else "started"
    run.save(f"{first}: {challenger} (version {state.version}) against {state.champion}, steps "
             f"{'/'.join(map(str, state.steps))}%, every {policy.interval:g}s (run {state.owner})", claim=True)
    _, tags = ops.read()  # two runs that started at once: the later write wins, the other stops here
    if (found := state_from_tags(tags)) is not None and found.owner != state.owner:
        raise RolloutError(f"endpoint {desired.name}: run {found.owner} started a rollout at the same time")
    try:
        return run.run()
    except KeyboardInterrupt:
        s = run.state
        out(f"interrupted at step {s.step + 1} ({s.weight}%, {s.phase}); the endpoint is as the tags say: "
            f"'--resume' carries on, 'predictor rollout abort {desired.name}' rolls back")
        raise


def abort(ops: Ops, desired: DesiredEndpoint, policy: Policy, *, out: Callable[[str], None] = print,
          now: Callable[[], float] = time.time) -> RolloutState:
    """Roll the active rollout back: the challenger to 0 %, the champion serves."""
    _, tags = ops.read()
    found = state_from_tags(tags)
    if found is None or not found.active:
        raise RolloutError(f"endpoint {desired.name}: no rollout in progress to abort")
    if found.phase == "promoting":
        raise RolloutError(f"endpoint {desired.name}: the promotion of {found.challenger} is under way (the champion "
                           "may be gone already); finish it with --resume")
    run = _Run(ops, desired, policy, lambda *_: {}, out, now, time.sleep, replace(found, owner=secrets.token_hex(4)))
    run.save(f"abort: rolling {found.challenger} back from {found.weight}%", claim=True, phase="rolling_back",
             reason="aborted by the user")
    run.finish()
    return run.state


# --- against a workspace (databricks-sdk) -----------------------------------------------------------


class WorkspaceOps:
    """:class:`Ops` over databricks-sdk: GET the endpoint, PATCH its tags, PUT its config and wait."""

    def __init__(self, w: Any, name: str, *, set_alias: AliasSetter, poll_interval: float = 5.0,
                 timeout: float = 1200.0, progress: Any = None) -> None:
        self.w, self.name, self._set_alias = w, name, set_alias
        self.poll_interval, self.timeout, self.progress = poll_interval, timeout, progress

    def read(self) -> tuple[DesiredEndpoint, dict[str, str]]:
        from ._diff import current_of
        from ._workspace import get_endpoint

        ep = get_endpoint(self.w, self.name)
        if ep is None:
            raise RolloutError(f"endpoint {self.name} does not exist; create it with 'predictor endpoints apply'")
        cur = current_of(ep)
        return cur, dict(cur.tags)

    def write_tags(self, add: Mapping[str, str], delete: Sequence[str]) -> None:
        from ._workspace import update_tags

        update_tags(self.w, self.name, add, delete)

    def set_config(self, desired: DesiredEndpoint) -> None:
        from ._workspace import update_config, wait_until_settled

        wait = {"poll_interval": self.poll_interval, "timeout": self.timeout, "progress": self.progress}
        wait_until_settled(self.w, self.name, **wait)  # a resumed run may find an update still going
        update_config(self.w, desired)
        wait_until_settled(self.w, self.name, **wait)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self._set_alias(model, alias, version)


def rollout(w: Any, desired: DesiredEndpoint, challenger: str, policy: Policy, evidence: EvidenceSource, *,
            set_alias: AliasSetter, champion: str | None = None, resume: bool = False,
            out: Callable[[str], None] = print, poll_interval: float = 5.0, timeout: float = 1200.0,
            progress: Any = None) -> RolloutState:
    """Run a canary rollout of served entity ``challenger`` on the workspace (see the module docstring)."""
    ops = WorkspaceOps(w, desired.name, set_alias=set_alias, poll_interval=poll_interval, timeout=timeout,
                       progress=progress)
    return run_rollout(ops, desired, challenger, policy, evidence, champion=champion, resume=resume, out=out)


def abort_rollout(w: Any, endpoint: str, *, out: Callable[[str], None] = print, poll_interval: float = 5.0,
                  timeout: float = 1200.0) -> RolloutState:
    """Roll back the rollout active on ``endpoint``: its challenger to 0 %, on the endpoint's own config."""
    ops = WorkspaceOps(w, endpoint, set_alias=lambda *_: None, poll_interval=poll_interval, timeout=timeout)
    current, _ = ops.read()
    return abort(ops, current, Policy(), out=out)


def rollout_status(w: Any, endpoint: str) -> RolloutState | None:
    """The endpoint's rollout state (from its tags), or None when it never had one."""
    _, tags = WorkspaceOps(w, endpoint, set_alias=lambda *_: None).read()
    return state_from_tags(tags)


def plan_rollout(desired: DesiredEndpoint, challenger: str, policy: Policy, *, champion: str | None = None,
                 active: RolloutState | None = None) -> list[str]:
    """What a rollout would do, step by step (``--dry-run``); nothing is read or written here."""
    champ = _champion_of(desired, challenger, champion)
    model = desired.entities[challenger]
    p = policy
    lines = [f"rollout of {challenger} ({model.entity_name} version {model.entity_version}) on endpoint "
             f"{desired.name}, against {champ} (version {desired.entities[champ].entity_version})"]
    if active is not None and active.active:
        lines.append(f"  ! a rollout of {active.challenger} is {active.phase} on the endpoint: this one would be "
                     "refused (--resume to carry it on)")
    for i, weight in enumerate(p.steps):
        routes = ", ".join(f"{k} {v}%" for k, v in sorted(split(weight, desired.traffic, champ, challenger).items()))
        if weight == 100:
            fate = "removed" if p.old_entity == "remove" else "kept at 0%"
            lines.append(f"  {i + 1}. promote: {routes}; {model.entity_name}@{p.alias} -> version "
                         f"{model.entity_version}; {champ} {fate}")
        else:
            lines.append(f"  {i + 1}. {routes}; judged after {p.interval:g}s (waits up to {p.deadline:g}s for "
                         f"{p.min_requests} requests each)")
    lines += [
        f"  checks: error rate <= champion's + {100 * p.max_error_rate_increase:g} pt; p99 <= champion's x "
        f"{p.max_p99_ratio:g} + {p.p99_slack_ms:g} ms; thumbs-up >= champion's - {100 * p.max_thumbs_up_drop:g} pt "
        f"(>= {p.min_feedback} votes); accuracy/RMSE within {100 * p.max_label_metric_drop:g} % "
        f"(>= {p.min_labels} labels); drift: {'on' if p.check_drift else 'off'}",
        f"  rolls back after {p.threshold} failed judgment(s), or a step past its deadline",
        "  dry run: nothing was changed",
    ]
    return lines

