"""The simulator: profiles, the discrete-time model around the Lambda's own estimate and decision
function, the oracle, the clairvoyant bound, prices, the goal's verdicts and the report."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

import mistersmith.scaling
import simulator.model
from local_stack.template import Template
from mistersmith.scaling import DEFAULT_POLICY, TASK_TIME_SAMPLE, PolicyKind
from simulator.__main__ import main
from simulator.bound import clairvoyant_task_hours
from simulator.compare import LABELS, Comparison, compare, default_policy, verdict
from simulator.model import Fleet, RunResult, _Run, oracle, simulate
from simulator.pricing import Prices
from simulator.profiles import ISSUE8, JUDGE, Burst, Profile, load_profile
from simulator.report import (
    BEGIN_MARKER,
    END_MARKER,
    closing_note,
    goal_table,
    plot,
    table,
    write_between_markers,
)

pytestmark = pytest.mark.unit

SMALL_BURST = Profile(
    "small-burst", "200 tasks at 2 min", 1800, lambda _t: 0.0, 0.0, bursts=(Burst(120, 200, 30),)
)
QUIET = Fleet(spot_interruptions_per_hour=0)


def test_simulator_model_calls_the_lambdas_estimate_and_decision_function():
    # Given the model module / When it decides / Then it calls the very functions the Lambda's
    # controller calls
    assert simulator.model.decide is mistersmith.scaling.decide
    assert simulator.model.estimate_task_seconds is mistersmith.scaling.estimate_task_seconds


def test_default_policy_matches_the_template_parameter_defaults():
    # Given template.yaml's scaling parameters
    defaults = Template.load().parameters
    # When the simulator builds a default deployment's policy
    policy = default_policy()
    # Then every value is the template's default
    assert policy.kind.value == defaults["ScalingPolicy"] == DEFAULT_POLICY.value
    assert (policy.min_tasks, policy.max_tasks) == (int(defaults["MinTasks"]), int(defaults["MaxTasks"]))
    assert policy.cooldown_seconds == float(defaults["ScalingCooldownSeconds"])
    assert policy.latency_seconds == float(defaults["ScalingLatencySeconds"])
    assert policy.task_seconds == float(defaults["ScalingTaskSeconds"])
    assert policy.start_seconds == float(defaults["WorkerStartSeconds"])
    assert policy.headroom == float(defaults["ScalingHeadroom"])
    assert policy.concurrency == int(defaults["WorkerConcurrency"])
    assert policy.steps == mistersmith.scaling.StepTable.parse(defaults["ScalingSteps"])


def test_profile_arrivals_same_seed_same_tasks_other_seed_other_tasks():
    # Given the steady profile / When drawn twice with one seed and once with another
    first, again, other = (JUDGE["steady"].arrivals(seed) for seed in (1, 1, 2))
    # Then one seed repeats exactly; another differs
    assert first == again
    assert first != other


def test_profile_steady_arrivals_match_the_judging_models_rate_and_task_times():
    # Given 0.5 tasks/s for 2 h, tasks log-normal with median 30 s and p95 120 s / When drawn
    arrivals = JUDGE["steady"].arrivals(1)
    seconds = sorted(s for _, s in arrivals)
    # Then about 3600 tasks arrive, in order, within the profile, with that median, p95 and a 43 s mean
    assert 3400 < len(arrivals) < 3800
    assert 27 < seconds[len(seconds) // 2] < 33
    assert 105 < seconds[int(0.95 * len(seconds))] < 135
    assert 40 < sum(seconds) / len(seconds) < 46
    assert [t for t, _ in arrivals] == sorted(t for t, _ in arrivals)
    assert arrivals[0][0] >= 0 and arrivals[-1][0] < 2 * 3600


@pytest.mark.parametrize(
    ("name", "tasks", "start", "end"), [("burst", 10_000, 600, 900), ("spike", 2_000, 300, 330)]
)
def test_profile_burst_and_spike_arrive_about_their_count_within_their_window(name, tasks, start, end):
    # Given the burst (10,000 in 5 min at 10 min) and the spike (2,000 in 30 s at 5 min) / When drawn
    times = [t for t, _ in JUDGE[name].arrivals(1)]
    # Then about that many arrive, all within the window
    assert abs(len(times) - tasks) < 4 * math.sqrt(tasks)
    assert start <= min(times) and max(times) < end


def test_issue8_model_keeps_the_earlier_profiles_and_task_times():
    # Given the named variant / When its steady profile is drawn / Then 4 h of 60 s tasks as before
    arrivals = ISSUE8["steady"].arrivals(1)
    assert 57 < sum(s for _, s in arrivals) / len(arrivals) < 63
    assert set(ISSUE8) == {"steady", "burst", "diurnal", "spike-then-silence", "ramp"}


def test_profile_burst_tasks_arrive_within_their_window():
    # Given a burst of 200 tasks over 30 s at 2 min / When drawn / Then all arrive in [120, 150)
    times = [t for t, _ in SMALL_BURST.arrivals(1)]
    assert len(times) == 200
    assert min(times) == 120 and max(times) < 150


def test_load_profile_reads_rates_and_bursts_from_csv(tmp_path):
    # Given a profile file: 1 task/s for 10 min, then a 50-task burst and silence until 20 min
    path = tmp_path / "mine.csv"
    path.write_text("seconds,rate_per_second,burst_tasks\n0,1,\n600,0,50\n1200,0,\n")
    # When loaded and drawn
    profile = load_profile(path)
    arrivals = profile.arrivals(1)
    # Then it lasts 20 min and holds about 600 Poisson tasks plus the burst
    assert (profile.name, profile.duration) == ("mine", 1200)
    assert 520 < len(arrivals) - 50 < 680
    assert sum(1 for t, _ in arrivals if 600 <= t < 660) >= 50


@pytest.mark.parametrize(
    "text",
    [
        "seconds,rate_per_second\n0,1\n",
        "seconds,rate_per_second\n0,x\n60,0\n",
        "seconds,rate_per_second\n60,1\n0,0\n",
        "seconds,rate_per_second\n0,-1\n60,0\n",
        "when,rate\n0,1\n60,0\n",
    ],
)
def test_load_profile_malformed_file_is_refused_with_its_line(tmp_path, text):
    # Given a file with one row, a bad number, times going back, a negative rate or wrong headers
    path = tmp_path / "bad.csv"
    path.write_text(text)
    # When loaded / Then it is refused naming the file
    with pytest.raises(ValueError, match=r"bad\.csv"):
        load_profile(path)


def test_oracle_bills_busy_time_only_and_nobody_waits():
    # Given three tasks of 60, 120 and 180 s / When the oracle runs them
    result = oracle("x", [(0.0, 60.0), (1.0, 120.0), (2.0, 180.0)], Prices())
    # Then it is billed 6 minutes and waits are zero
    assert result.task_hours == pytest.approx(0.1)
    assert result.wait(0.95) == result.wait(1.0) == 0


def test_oracle_at_concurrency_two_bills_half_the_worker_time():
    # Given two 60 s tasks on workers that run two at once / When the oracle runs them / Then 1 minute
    assert oracle("x", [(0.0, 60.0), (0.0, 60.0)], Prices(), 2).task_hours == pytest.approx(1 / 60)


def test_prices_default_to_the_platform_figures_and_the_template_spot_mix():
    # Given the default prices / When read / Then 1 vCPU + 2 GB x86 on demand, Spot 70 % off, 2:1 weights
    prices = Prices()
    assert prices.on_demand_hour == pytest.approx(0.04048 + 2 * 0.004445)
    assert prices.spot_hour == pytest.approx(prices.on_demand_hour * 0.3)
    assert Prices(architecture="arm").on_demand_hour == pytest.approx(0.03238 + 2 * 0.00356)
    assert prices.spot_share == pytest.approx(2 / 3)


def test_prices_place_on_demand_base_first_then_spot_by_weight():
    # Given the base of 2 on FARGATE and Spot weight 2 to 1 / When 8 tasks are placed in turn
    prices, od, spot = Prices(), 0, 0
    for _ in range(8):
        if prices.place_on_spot(od, spot):
            spot += 1
        else:
            od += 1
    # Then 2 base + 2 more on demand, and 4 on Spot
    assert (od, spot) == (4, 4)


@pytest.mark.parametrize("kind", list(PolicyKind))
def test_simulate_every_task_finishes_and_billing_covers_the_work(kind):
    # Given a small burst and any policy / When simulated
    arrivals = SMALL_BURST.arrivals(1)
    result = simulate("small", arrivals, replace(default_policy(), kind=kind), duration=1800, fleet=QUIET)
    # Then every task ran once, nobody waited negative time, and billing covers the busy time
    assert len(result.waits) == result.tasks == 200
    assert result.wait(0.0) >= 0
    assert result.task_hours >= result.busy_hours
    assert result.end >= 1800


def test_simulate_launch_limit_caps_starts_per_second():
    # Given a fleet that may launch 10 at once then 1 a second, and 1000 tasks waiting at the first tick
    profile = Profile("wall", "1000 at once", 600, lambda _t: 0.0, 0.0, bursts=(Burst(1, 1000, 1),))
    fleet = Fleet(launch_burst=10, launches_per_second=1, spot_interruptions_per_hour=0)
    # When the drain policy asks for many tasks at the 60 s tick
    result = simulate("wall", profile.arrivals(1), default_policy(), duration=600, fleet=fleet)
    # Then 10 s later at most 2 + 10 + 10 tasks exist
    at_70 = result.samples["t"].index(70 / 3600)
    assert result.samples["running"][at_70] + result.samples["pending"][at_70] <= 22


def test_simulate_spot_interruptions_requeue_work_and_lose_no_task():
    # Given frequent Spot interruptions / When a burst runs
    fleet = Fleet(spot_interruptions_per_hour=20)
    result = simulate("small", SMALL_BURST.arrivals(1), default_policy(), duration=1800, fleet=fleet)
    # Then some tasks were interrupted, and every task still finished
    assert result.interruptions > 0
    assert len(result.waits) == 200


def test_simulate_start_latency_delays_the_first_scale_out():
    # Given 200 tasks at 2 min and a 60 s start / When drained by the default policy
    result = simulate("small", SMALL_BURST.arrivals(1), default_policy(), duration=1800, fleet=QUIET)
    # Then the last tasks of the burst waited at least the tick plus the start latency
    assert result.wait(1.0) >= 60


def test_simulate_reads_task_times_as_the_lambda_does():
    # Given 300 workers two minutes into the spike's backlog, before any decision
    arrivals = JUDGE["spike"].arrivals(1)
    probe = _Run(arrivals, default_policy(), QUIET, Prices(), 1)
    for _ in range(300):
        probe.launch(0.0, ready=True)
    for t in range(1, 420):
        probe.step(t)
    times = probe.task_times()
    # When read / Then the newest finished by creation (at most the Lambda's sample), newest first, and
    # the running ones created no earlier than the oldest of them
    created = [c for c, _ in times.finished]
    assert 0 < len(created) <= TASK_TIME_SAMPLE
    assert created == sorted(created, reverse=True)
    assert all(c >= min(created) for c, _ in times.running)
    assert all(started <= 419 for _, started in times.running)


def test_simulate_missing_metrics_change_nothing():
    # Given every tick's metrics missing / When a burst arrives / Then the count stays at min
    result = simulate(
        "small",
        SMALL_BURST.arrivals(1),
        default_policy(),
        duration=600,
        fleet=replace(QUIET, missing_metrics=1.0),
    )
    assert max(result.samples["desired"]) == default_policy().min_tasks


def test_simulate_stale_depth_reacts_a_tick_later():
    # Given the depth read one tick late / When 200 tasks arrive at 2 min
    fresh = simulate("small", SMALL_BURST.arrivals(1), default_policy(), duration=1800, fleet=QUIET)
    stale = simulate(
        "small",
        SMALL_BURST.arrivals(1),
        default_policy(),
        duration=1800,
        fleet=replace(QUIET, depth_lag_ticks=1),
    )
    # Then the first scale-out comes a tick later, and the tasks wait longer
    first = next(t for t, d in zip(fresh.samples["t"], fresh.samples["desired"], strict=True) if d > 2)
    late = next(t for t, d in zip(stale.samples["t"], stale.samples["desired"], strict=True) if d > 2)
    assert late == pytest.approx(first + 60 / 3600)
    assert stale.wait(0.95) > fresh.wait(0.95)


def test_simulate_counts_reversals_and_no_busy_worker_is_set_aside():
    # Given the steady profile / When the default policy runs it
    result = simulate("steady", JUDGE["steady"].arrivals(1), default_policy(), duration=7200, fleet=QUIET)
    # Then its reversals are counted (at most 4 an hour) and no decision went below the busy workers
    assert result.reversals_per_hour <= 4
    assert result.stopped_busy == 0
    assert result.unfinished == 0


def test_clairvoyant_bound_costs_more_than_the_work_and_more_for_a_shorter_wait():
    # Given the spike / When the bound is computed for half an hour's allowed wait and for a minute
    arrivals = JUDGE["spike"].arrivals(1)
    busy = sum(s for _, s in arrivals) / 3600
    args = {"min_tasks": 2, "duration": JUDGE["spike"].duration, "fleet": QUIET, "prices": Prices()}
    relaxed = clairvoyant_task_hours(arrivals, wait=1800, **args)
    strict = clairvoyant_task_hours(arrivals, wait=60, **args)
    # Then both cost more than the busy time, a shorter wait costs more, and at worst one start a task
    assert busy < relaxed < strict
    assert strict < busy + 2 * JUDGE["spike"].duration / 3600 + 2000 * 61 / 3600


def test_bound_held_to_decisions_a_minute_costs_more_than_the_clairvoyant_one():
    # Given the spike and the clairvoyant bound at half the step table's wait (about 500 s)
    arrivals = JUDGE["spike"].arrivals(1)
    args = {"wait": 500, "min_tasks": 2, "duration": JUDGE["spike"].duration, "fleet": QUIET}
    clairvoyant = clairvoyant_task_hours(arrivals, prices=Prices(), **args)
    # When it may launch only at a decision that has seen the task, and stop only at one
    every_minute = clairvoyant_task_hours(arrivals, prices=Prices(), decisions=60, **args)
    every_second = clairvoyant_task_hours(arrivals, prices=Prices(), decisions=1, **args)
    # Then it costs more (it launches after the spike, not before, and idles to the next decision),
    # and more the rarer the decisions
    assert clairvoyant < every_second < every_minute


def _comparison(
    hours: float, wait: float, step_wait: float, bound: float | None, reactive: float | None = None
) -> Comparison:
    def run(policy: str, task_hours: float, p95: float) -> RunResult:
        return RunResult("p", policy, 1, [p95], 0.0, task_hours, task_hours, 0.0, 0.0, 0.0, duration=3600)

    return Comparison(
        JUDGE["burst"],
        1,
        run("oracle", 10.0, 0.0),
        [run(LABELS[PolicyKind.STEP], 30.0, step_wait), run(LABELS[DEFAULT_POLICY], hours, wait)],
        bound,
        reactive,
    )


@pytest.mark.parametrize(
    ("hours", "wait", "bound", "passed"),
    [
        (12.5, 50.0, 11.0, True),  # 1.25x the oracle, half the step table's wait
        (12.6, 50.0, 11.0, False),  # over 1.25x, the bound reachable
        (12.5, 51.0, 11.0, False),  # wait over half
        (14.3, 50.0, 13.0, True),  # out of reach (bound 1.3x): within 1.1x the bound
        (14.4, 50.0, 13.0, False),  # out of reach, beyond 1.1x the bound
        (12.6, 50.0, 13.0, False),  # a bound of 1.3x the policy beats (1.26x) shows nothing out of reach
    ],
)
def test_verdict_applies_the_goal_and_the_bound(hours, wait, bound, passed):
    # Given the default policy's task-hours and p95 wait, the step table's 100 s, the oracle's 10 h
    result = verdict(_comparison(hours, wait, 100.0, bound))
    # When judged / Then it passes only within the goal, or within 1.1x an out-of-reach bound
    assert result is not None
    assert result.passed is passed


@pytest.mark.parametrize(
    ("hours", "reactive", "passed"),
    [
        (12.6, 12.55, True),  # the goal beyond decisions a minute (1.255x): within 1.1x the bound
        (12.7, 12.55, False),  # beyond 1.1x the bound
        (12.6, 12.0, False),  # reachable with decisions a minute (1.2x): 1.25x applies
        (12.6, 13.0, False),  # the policy beats that schedule (1.3x), so it shows nothing out of reach
    ],
)
def test_verdict_goal_out_of_reach_for_decisions_a_minute_is_judged_by_the_bound(hours, reactive, passed):
    # Given the oracle's 10 h, a clairvoyant bound of 11.5 h (1.15x, reachable) and the bound held to
    # the decision schedule / When judged / Then out of reach only if the latter is above 1.25x and
    # the policy does not beat it
    result = verdict(_comparison(hours, 50.0, 100.0, 11.5, reactive))
    assert result is not None
    assert result.passed is passed


def test_seed_table_after_a_spike_keeps_idle_tasks_far_longer_than_drain():
    # Given the spike profile / When the seed's table and drain run it
    comparison = compare(JUDGE["spike"], fleet=QUIET, bound=False)
    step, drain = comparison.runs
    # Then the seed's table pays several times the task-hours (one task removed per minute)
    assert step.task_hours > 2.5 * drain.task_hours


@pytest.mark.parametrize("name", ["steady", "burst", "diurnal", "ramp"])
def test_default_policy_meets_the_goal_on_seed_1(name):
    # Given a profile the default policy meets the goal on / When the seed's table and it run seed 1
    result = verdict(compare(JUDGE[name], seed=1))
    # Then the goal holds: 1.25x the oracle, half the table's p95 wait, calm, nothing lost
    assert result is not None and result.passed, result


def test_tables_plain_and_markdown_list_every_run_and_every_cell():
    # Given a small comparison / When rendered
    comparison = compare(SMALL_BURST, fleet=QUIET)
    plain, markdown = table([comparison]), table([comparison], markdown=True)
    # Then both name the policies and the oracle, one row each; the goal table one cell with its verdict
    for label in [LABELS[PolicyKind.STEP], LABELS[DEFAULT_POLICY], "oracle"]:
        assert label in plain
        assert f"| {label} |" in markdown
    assert markdown.splitlines()[1].startswith("|---|")
    cell = verdict(comparison)
    assert cell is not None
    assert ("PASS" if cell.passed else "FAIL") in goal_table([cell])
    assert "small-burst" in closing_note([cell]) or cell.passed


def test_plot_writes_a_small_png(tmp_path):
    # Given a small comparison / When plotted / Then a PNG under 200 kB is written
    path = plot(compare(SMALL_BURST, fleet=QUIET), tmp_path / "plot.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) < 200_000


def test_main_prints_the_goal_per_seed_and_exits_0_when_every_cell_passes(tmp_path, capsys):
    # Given the steady profile, one seed / When the CLI runs it
    code = main(["--profile", "steady", "--seed", "1", "--no-plot"])
    # Then it prints the cell with its verdict and the closing note, and exits 0
    output = capsys.readouterr().out
    assert "steady   1" in output and "PASS" in output
    assert "every cell passes" in output
    assert code == 0


def test_main_profile_file_runs_with_the_models_task_times(tmp_path, capsys):
    # Given a profile file / When the CLI runs it with a seed
    path = tmp_path / "night.csv"
    path.write_text("seconds,rate_per_second,burst_tasks\n0,0.05,\n600,0,100\n1800,0,\n")
    main(["--profile-file", str(path), "--profile", "spike", "--seed", "2", "--runs", "--no-plot"])
    # Then both profiles' runs and cells are printed
    output = capsys.readouterr().out
    assert "night" in output and "spike" in output
    assert "oracle" in output


def test_write_between_markers_replaces_only_the_marked_block(tmp_path):
    # Given a document with a marked block / When the table is written
    path = tmp_path / "doc.md"
    path.write_text(f"before\n{BEGIN_MARKER}\nold table\n{END_MARKER}\nafter\n")
    write_between_markers(path, "| new |")
    # Then only the block changes; a document without the markers is refused
    assert path.read_text() == f"before\n{BEGIN_MARKER}\n| new |\n{END_MARKER}\nafter\n"
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match=r"bare\.md"):
        write_between_markers(tmp_path / "bare.md", "| new |")
