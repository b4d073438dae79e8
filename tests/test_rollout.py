"""Canary rollouts, pure: the checks (``_canary.judge``), the state's tag form, the ``rollout:``
block, and the whole loop against an in-memory endpoint with the clock patched (no sleeping)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from client.endpoints import ServingConfigError, parse_config
from client.endpoints._canary import LOG_TAGS, STATE_TAG, Evidence, Policy, RolloutState, judge, split, state_from_tags
from client.endpoints._config import DesiredEndpoint, EntityState
from client.endpoints._rollout import RolloutError, abort, plan_rollout, policy_of, run_rollout

GOOD = Evidence(requests=200, errors=1, p99_ms=40.0)


def test_judge_passes_a_challenger_as_good_as_the_champion() -> None:
    j = judge(Policy(min_requests=100), GOOD, Evidence(requests=120, errors=1, p99_ms=45.0))
    assert j.verdict == "pass"
    assert [(c.name, c.outcome) for c in j.checks] == [
        ("samples", "pass"), ("error rate", "pass"), ("latency p99", "pass"), ("thumbs-up rate", "skip"),
        ("label metric", "skip"), ("drift", "pass")]


@pytest.mark.parametrize(("challenger", "failing", "figures"), [
    (Evidence(requests=100, errors=20, p99_ms=40.0), "error rate", "challenger 20.0 % (20/100) vs champion 0.5 %"),
    (Evidence(requests=100, errors=0, p99_ms=121.0), "latency p99", "challenger 121 ms vs champion 40 ms, limit 70 ms"),
    (Evidence(requests=100, p99_ms=40.0, broken_rules=("drift:x", "nulls:y")), "drift",
     "challenger alone breaks nulls:y"),
])
def test_judge_fails_on_each_check_with_its_figures(challenger: Evidence, failing: str, figures: str) -> None:
    champion = replace(GOOD, broken_rules=("drift:x",))
    j = judge(Policy(min_requests=100, p99_slack_ms=10), champion, challenger)
    assert j.verdict == "fail"
    assert [c.name for c in j.checks if c.outcome == "fail"] == [failing]
    assert figures in j.text()


def test_judge_waits_for_samples_then_judges_feedback_and_labels() -> None:
    p = Policy(min_requests=100, min_feedback=30, min_labels=20)
    few = judge(p, GOOD, Evidence(requests=7, p99_ms=1.0))
    assert few.verdict == "wait" and "requests: challenger 7, champion 200 (need 100 each)" in few.text()
    votes = judge(p, replace(GOOD, feedback=50, thumbs_up=40), replace(GOOD, feedback=10, thumbs_up=10))
    assert votes.verdict == "wait" and "votes: challenger 10, champion 50 (need 30 each)" in votes.text()
    worse = judge(p, replace(GOOD, feedback=50, thumbs_up=40), replace(GOOD, feedback=40, thumbs_up=20))
    assert worse.verdict == "fail" and "challenger 50.0 % of 40 vs champion 80.0 % of 50, floor 75.0 %" in worse.text()
    rmse = judge(p, replace(GOOD, labels=30, label_metric=("rmse", 1.0)),
                 replace(GOOD, labels=30, label_metric=("rmse", 1.2)))
    assert rmse.verdict == "fail" and "rmse: challenger 1.2 (30 labels) vs champion 1 (30), ceiling 1.05" in rmse.text()
    acc = judge(p, replace(GOOD, labels=30, label_metric=("accuracy", 0.9)),
                replace(GOOD, labels=25, label_metric=("accuracy", 0.89)))
    assert acc.verdict == "pass"


def test_split_moves_only_the_champion_challenger_pool() -> None:
    assert split(25, {"champion": 90, "challenger": 10}, "champion", "challenger") == {"champion": 75, "challenger": 25}
    assert split(50, {"a": 80, "b": 0, "shadow": 20}, "a", "b") == {"a": 40, "b": 40, "shadow": 20}
    assert split(0, {"a": 50, "b": 50}, "a", "b") == {"a": 100, "b": 0}


def test_state_round_trips_through_short_tags() -> None:
    s = RolloutState(owner="ab12", challenger="challenger", champion="champion", version="2",
                     steps=(10, 25, 50, 100), step=1, failed=1, started=1.5, step_started=2.0, window_start=3.0,
                     reason="a;b=c")
    for i in range(12):
        s = s.logged(100.0 + i, f"decision {i} " + "x" * 300)
    tags = s.tags()
    assert all(len(v) <= 255 for v in tags.values()) and set(tags) == {STATE_TAG, *LOG_TAGS}
    back = state_from_tags(tags)
    assert back is not None and back.reason == "a,b:c"  # the separators cannot break the encoding
    assert replace(back, reason=s.reason) == s and back.log[0].startswith("1970-01-01T00:01:51Z decision 11")
    assert back.weight == 25 and back.active
    with pytest.raises(ValueError, match="unreadable rollout state tag"):
        RolloutState.decode("owner=x;phase=exploded")


BLOCK = """\
name: ep
served_entities:
  - {name: champion, entity_name: m.s.iris, alias: champion}
  - {name: challenger, entity_name: m.s.iris, entity_version: 2}
traffic: {champion: 90, challenger: 10}
rollout:
  steps: [5, 50, 100]
  interval: 250ms
  deadline: 2m
  threshold: 2
"""


def test_rollout_block_parses_and_is_checked_at_its_line() -> None:
    spec = parse_config(BLOCK).rollout
    assert spec is not None and (spec.steps, spec.interval, spec.deadline, spec.threshold) == ([5, 50, 100], 0.25,
                                                                                                  120.0, 2)
    p = policy_of(spec, interval=1.0, threshold=None)
    assert (p.steps, p.interval, p.threshold) == ((5, 50, 100), 1.0, 2)
    bad = BLOCK.replace("[5, 50, 100]", "[50, 25]").replace("250ms", "soon") + "  champion: nobody\n  typo: 1\n"
    with pytest.raises(ServingConfigError) as err:
        parse_config(bad, "ep.yaml")
    text = str(err.value)
    assert "ep.yaml:7: rollout.steps: Value error, steps [50, 25] must increase" in text or \
        "ep.yaml:7: rollout.steps: steps [50, 25] must increase" in text
    assert "ep.yaml:8: rollout.interval: 'soon' is not a duration" in text
    assert "ep.yaml:12: rollout.typo: Extra inputs are not permitted" in text
    with pytest.raises(ServingConfigError, match=r"steps \[10, 50\] must end at 100"):
        parse_config(BLOCK.replace("[5, 50, 100]", "[10, 50]"))


# --- the loop, against an in-memory endpoint ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class Memory:
    """An endpoint in memory: its config, tags, and every change made to it."""

    def __init__(self, desired: DesiredEndpoint) -> None:
        self.cur = desired
        self.tags: dict[str, str] = {}
        self.configs: list[dict[str, int]] = []
        self.aliases: list[tuple[str, str, str]] = []
        self.fail_on_config: int | None = None

    def read(self) -> tuple[DesiredEndpoint, dict[str, str]]:
        return self.cur, dict(self.tags)

    def write_tags(self, add: Any, delete: Any) -> None:
        for k in delete:
            self.tags.pop(k, None)
        self.tags.update(add)

    def set_config(self, desired: DesiredEndpoint) -> None:
        if self.fail_on_config is not None and len(self.configs) == self.fail_on_config:
            raise KeyboardInterrupt  # Ctrl-C while the update is under way: the PUT was not sent
        self.cur = desired
        self.configs.append(dict(desired.traffic))

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.aliases.append((model, alias, version))


def endpoint() -> DesiredEndpoint:
    e = EntityState("champion", "m.s.iris", "1")
    return DesiredEndpoint("ep", {"champion": e, "challenger": replace(e, name="challenger", entity_version="2")},
                           {"champion": 90, "challenger": 10})


def evidence_of(challenger: Evidence, champion: Evidence = GOOD) -> Any:
    windows: list[tuple[float, float]] = []

    def source(name: str, entities: Any, start: Any, end: Any) -> dict[str, Evidence]:
        windows.append((start.timestamp(), end.timestamp()))
        return {"champion": champion, "challenger": challenger}

    source.windows = windows  # type: ignore[attr-defined]
    return source


POLICY = Policy(interval=60, deadline=600, min_requests=100)


def run(mem: Memory, ev: Any, clock: Clock, policy: Policy = POLICY, **kw: Any) -> tuple[RolloutState, list[str]]:
    lines: list[str] = []
    state = run_rollout(mem, mem.cur, "challenger", policy, ev, out=lines.append, now=clock.now, sleep=clock.sleep,
                        **kw)
    return state, lines


def test_a_good_challenger_goes_step_by_step_to_100_and_champion() -> None:
    mem, clock = Memory(endpoint()), Clock()
    ev = evidence_of(Evidence(requests=150, p99_ms=41.0))
    state, lines = run(mem, ev, clock)
    assert state.phase == "promoted"
    assert mem.configs == [{"champion": 75, "challenger": 25}, {"champion": 50, "challenger": 50},
                           {"challenger": 100}]  # 10 % was already in place; the old champion removed
    assert mem.aliases == [("m.s.iris", "champion", "2")]
    assert [ln.split(":")[0] for ln in lines if "PASS" in ln] == ["step 1 (10%)", "step 2 (25%)", "step 3 (50%)"]
    assert "error rate PASS: challenger 0.0 % (0/150) vs champion 0.5 % (1/200), limit 1.5 %" in lines[2]
    assert ev.windows == [(1_000_000.0 + 60 * i, 1_000_000.0 + 60 * (i + 1)) for i in range(3)]  # one per step
    assert clock.t == 1_000_000.0 + 180  # slept three intervals, nothing more
    done = state_from_tags(mem.tags)
    assert done is not None and done.phase == "promoted" and done.log[0].split(" ", 1)[1].startswith("promoted:")


def test_a_failing_challenger_is_rolled_back_at_its_first_step() -> None:
    mem, clock = Memory(endpoint()), Clock()
    state, lines = run(mem, evidence_of(Evidence(requests=100, errors=20, p99_ms=40.0)), clock)
    assert state.phase == "rolled_back" and state.reason == "failed at 10%"
    assert mem.configs == [{"champion": 100, "challenger": 0}] and mem.aliases == []
    assert any(ln.startswith("step 1 (10%): FAIL (1/1), rolling back: ") and "20.0 % (20/100)" in ln for ln in lines)


def test_threshold_allows_failures_before_rolling_back() -> None:
    mem, clock = Memory(endpoint()), Clock()
    state, lines = run(mem, evidence_of(Evidence(requests=100, p99_ms=500.0)), clock, replace(POLICY, threshold=3))
    assert state.phase == "rolled_back" and state.failed == 3
    assert [ln[:30] for ln in lines if "FAIL" in ln] == [
        "step 1 (10%): FAIL (1/3), judg", "step 1 (10%): FAIL (2/3), judg", "step 1 (10%): FAIL (3/3), roll"]


def test_too_little_traffic_waits_then_stops_at_the_deadline() -> None:
    mem, clock = Memory(endpoint()), Clock()
    ev = evidence_of(Evidence(requests=3, p99_ms=40.0))
    state, lines = run(mem, ev, clock)
    assert state.phase == "rolled_back" and state.reason == "deadline at 10%"
    assert sum(ln.startswith("step 1 (10%): WAIT: samples WAIT") for ln in lines) == 9
    assert "deadline (600s) passed" in lines[-3]
    assert {start for start, _ in ev.windows} == {1_000_000.0}  # the window grows while it waits
    assert mem.configs == [{"champion": 100, "challenger": 0}]


def test_interrupted_rollout_is_refused_then_resumed_without_half_applied_traffic() -> None:
    mem, clock = Memory(endpoint()), Clock()
    mem.fail_on_config = 1  # Ctrl-C as the move to 50 % is about to be sent
    good = evidence_of(Evidence(requests=150, p99_ms=41.0))
    with pytest.raises(KeyboardInterrupt):
        run(mem, good, clock)
    s = state_from_tags(mem.tags)
    assert s is not None and (s.phase, s.weight) == ("running", 50)  # the intent was written first
    assert mem.cur.traffic == {"champion": 75, "challenger": 25}  # the endpoint is still at the old step
    with pytest.raises(RolloutError, match=r"a rollout of challenger is already running .* --resume"):
        run(mem, good, clock)
    mem.fail_on_config = None
    state, lines = run(mem, good, clock, resume=True)
    assert state.phase == "promoted" and lines[0].startswith("resumed:")
    assert mem.configs[1] == {"champion": 50, "challenger": 50}  # reconciled to the step the tags hold
    with pytest.raises(RolloutError, match="no rollout in progress to resume"):
        run(mem, good, clock, resume=True)


def test_abort_rolls_back_and_a_run_that_lost_the_endpoint_stops() -> None:
    mem, clock = Memory(endpoint()), Clock()
    aborted: list[Any] = []

    def abort_during_step_2(name: str, entities: Any, start: Any, end: Any) -> dict[str, Evidence]:
        if state_from_tags(mem.tags).weight == 25 and not aborted:  # type: ignore[union-attr]
            aborted.append(abort(mem, mem.cur, POLICY, out=lambda _: None))
        return {"champion": GOOD, "challenger": Evidence(requests=150, p99_ms=40.0)}

    with pytest.raises(RolloutError, match="taken over by run"):
        run(mem, abort_during_step_2, clock)
    assert aborted[0].phase == "aborted" and mem.cur.traffic == {"champion": 100, "challenger": 0}
    with pytest.raises(RolloutError, match="no rollout in progress to abort"):
        abort(mem, mem.cur, POLICY)


def test_dry_run_plan_lists_steps_and_checks() -> None:
    lines = plan_rollout(endpoint(), "challenger", replace(POLICY, old_entity="keep"))
    assert lines[1:5] == [
        "  1. challenger 10%, champion 90%; judged after 60s (waits up to 600s for 100 requests each)",
        "  2. challenger 25%, champion 75%; judged after 60s (waits up to 600s for 100 requests each)",
        "  3. challenger 50%, champion 50%; judged after 60s (waits up to 600s for 100 requests each)",
        "  4. promote: challenger 100%, champion 0%; m.s.iris@champion -> version 2; champion kept at 0%",
    ]
    with pytest.raises(RolloutError, match="no served entity 'nope'"):
        plan_rollout(endpoint(), "nope", POLICY)


def test_evidence_from_client_monitorings_report_per_served_entity() -> None:
    """The translation, on client.monitoring's real report over a records frame."""
    import pandas as pd

    from client.endpoints import evidence_from_report
    from client.monitoring import report

    t0 = pd.Timestamp("2026-12-01T10:00:00Z")
    rows = []
    for i in range(40):
        challenger = i % 4 == 0
        rows.append({
            "request_time": t0 + pd.Timedelta(seconds=i), "databricks_request_id": f"r{i}",
            "served_entity": "challenger" if challenger else "champion", "model_version": "2" if challenger else "1",
            "status_code": 503 if challenger and i % 8 == 0 else 200, "error": None,
            "execution_duration_ms": 30.0 if challenger else 10.0, "x": float(i % 5),
            "prediction": "a" if i % 3 else "b", "label": "a", "thumbs_up": (i % 2 == 0) if i < 20 else None,
        })
    ev = evidence_from_report(report(pd.DataFrame(rows), by="served_entity"))
    champ, chal = ev["champion"], ev["challenger"]
    assert (champ.requests, champ.errors, chal.requests, chal.errors) == (30, 0, 10, 5)
    assert (champ.p99_ms, chal.p99_ms) == (10.0, 30.0)
    assert (chal.feedback, chal.thumbs_up) == (5, 5) and champ.feedback == 15
    assert chal.label_metric is not None and chal.label_metric[0] == "accuracy" and chal.labels == 10
    assert judge(Policy(min_requests=10, min_feedback=5, min_labels=10), champ, chal).verdict == "fail"
