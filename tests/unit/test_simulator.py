"""The simulator: profiles, the discrete-time model around the Lambda's own decision function, the
oracle, prices, the report, and issue 8's bar for the default policy on the standard profiles."""

from __future__ import annotations

from dataclasses import replace

import pytest

import mistersmith.scaling
import simulator.model
from local_stack.template import Template
from mistersmith.scaling import DEFAULT_POLICY, PolicyKind
from simulator.__main__ import main
from simulator.compare import LABELS, compare, default_policy
from simulator.model import Fleet, oracle, simulate
from simulator.pricing import Prices
from simulator.profiles import STANDARD, Burst, Profile, load_profile
from simulator.report import TASK_HOURS_BAR, plot, table, verdicts

pytestmark = pytest.mark.unit

SMALL_BURST = Profile(
    "small-burst", "200 tasks at 2 min", 1800, lambda _t: 0.0, 0.0, bursts=(Burst(120, 200, 30),)
)
QUIET = Fleet(spot_interruptions_per_hour=0)


def test_simulator_model_calls_the_lambdas_decision_function():
    # Given the model module / When it decides / Then it is the very function the Lambda's controller calls
    assert simulator.model.decide is mistersmith.scaling.decide


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
    assert policy.steps == mistersmith.scaling.StepTable.parse(defaults["ScalingSteps"])


def test_profile_arrivals_same_seed_same_tasks_other_seed_other_tasks():
    # Given the steady profile / When drawn twice with one seed and once with another
    first, again, other = (STANDARD["steady"].arrivals(seed) for seed in (1, 1, 2))
    # Then one seed repeats exactly; another differs
    assert first == again
    assert first != other


def test_profile_steady_arrivals_match_its_rate_and_mean_task_time():
    # Given 0.5 tasks/s for 4 h with 60 s tasks / When drawn
    arrivals = STANDARD["steady"].arrivals(1)
    # Then about 7200 tasks of about 60 s arrive, in order, within the profile
    assert 6900 < len(arrivals) < 7500
    assert 57 < sum(seconds for _, seconds in arrivals) / len(arrivals) < 63
    assert [t for t, _ in arrivals] == sorted(t for t, _ in arrivals)
    assert arrivals[0][0] >= 0 and arrivals[-1][0] < 4 * 3600


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


def test_seed_table_after_a_burst_keeps_idle_tasks_far_longer_than_drain():
    # Given the spike-then-silence profile / When the seed's table and drain run it
    comparison = compare(
        STANDARD["spike-then-silence"], kinds=(PolicyKind.STEP, PolicyKind.DRAIN), fleet=QUIET
    )
    step, drain = comparison.runs
    # Then the seed's table pays several times the task-hours (one task removed per minute)
    assert step.task_hours > 2.5 * drain.task_hours


@pytest.mark.parametrize("name", [name for name, profile in STANDARD.items() if profile.standard])
def test_default_policy_meets_the_bar_on_every_standard_profile(name):
    # Given a standard profile / When the seed's table and the default policy run it
    comparison = compare(STANDARD[name], kinds=(PolicyKind.STEP, DEFAULT_POLICY))
    # Then task-hours <= 1.3x the oracle's busy time and p95 wait no worse than the seed's table
    ((profile, passed, why),) = verdicts([comparison], LABELS[DEFAULT_POLICY], LABELS[PolicyKind.STEP])
    assert passed, f"{profile}: {why}"
    assert TASK_HOURS_BAR == 1.3


def test_table_plain_and_markdown_list_every_policy_and_the_oracle():
    # Given a small comparison / When rendered
    comparison = compare(SMALL_BURST, fleet=QUIET)
    plain, markdown = table([comparison]), table([comparison], markdown=True)
    # Then both name the three policies and the oracle, one row each
    for label in [*LABELS.values(), "oracle"]:
        assert label in plain
        assert f"| {label} |" in markdown
    assert markdown.splitlines()[1].startswith("|---|")


def test_plot_writes_a_small_png(tmp_path):
    # Given a small comparison / When plotted / Then a PNG under 200 kB is written
    path = plot(compare(SMALL_BURST, fleet=QUIET), tmp_path / "plot.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) < 200_000


def test_main_profile_file_prints_table_and_verdict(tmp_path, capsys):
    # Given a profile file / When the CLI runs it without the plot
    path = tmp_path / "night.csv"
    path.write_text("seconds,rate_per_second,burst_tasks\n0,0.05,\n600,0,100\n1800,0,\n")
    code = main(
        [
            "--profile-file",
            str(path),
            "--profile",
            "steady",
            "--no-plot",
            "--policy",
            "step",
            "--policy",
            "drain",
        ]
    )
    # Then it prints both profiles' rows and the verdicts, and exits 0: the standard profile meets the bar
    output = capsys.readouterr().out
    assert "night" in output and "steady" in output
    assert "the bar on steady" in output
    assert code == 0
