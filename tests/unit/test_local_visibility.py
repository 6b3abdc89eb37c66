"""The local stack's one stream: lines prefixed with their component's name (functions in threads,
workers through their log files), and the metrics of the EMF lines summed per series."""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading
import time
from pathlib import Path

import pytest

from local_stack.__main__ import main as local_stack_main
from local_stack.console import ComponentStream, Console, LogFollower, compact_line, component
from local_stack.emf import (
    DataPoint,
    MetricsCollector,
    SeriesKey,
    aggregate,
    data_points,
    json_objects,
    points_in_line,
    summary_table,
)
from local_stack.lambda_runtime import component_name
from local_stack.stack import as_function
from local_stack.template import Template

pytestmark = pytest.mark.unit

# A line as Powertools Metrics writes it (two values of one metric in one flush).
WORKER_EMF = (
    '{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"MisterSmith",'
    '"Dimensions":[["service"]],"Metrics":[{"Name":"TasksSucceeded","Unit":"Count"},'
    '{"Name":"TaskDuration","Unit":"Milliseconds"}]}]},"service":"mistersmith-worker",'
    '"TasksSucceeded":[1.0,1.0],"TaskDuration":[40.0,120.0]}'
)
WORKER = (("service", "mistersmith-worker"),)
LOG_LINE = '{"level":"INFO","message":"task routed","task_id":"t-1"}'


class Exited:
    def __init__(self, code: int | None = 0) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(out), out


# --- EMF -----------------------------------------------------------------------------------------


def test_a_powertools_line_gives_one_point_per_value():
    points = points_in_line(WORKER_EMF)

    assert points == [
        DataPoint(SeriesKey("TasksSucceeded", WORKER, "Count", "MisterSmith"), 1.0),
        DataPoint(SeriesKey("TasksSucceeded", WORKER, "Count", "MisterSmith"), 1.0),
        DataPoint(SeriesKey("TaskDuration", WORKER, "Milliseconds", "MisterSmith"), 40.0),
        DataPoint(SeriesKey("TaskDuration", WORKER, "Milliseconds", "MisterSmith"), 120.0),
    ]


def test_two_objects_that_ran_together_are_both_read():
    text = LOG_LINE + WORKER_EMF

    assert [document.get("message", "emf") for document in json_objects(text)] == ["task routed", "emf"]
    assert len(points_in_line(text)) == 4


def test_a_cut_line_is_skipped_and_what_follows_it_still_counts():
    # A worker killed mid-line; the next worker's line is appended right after it.
    text = WORKER_EMF[:150] + WORKER_EMF

    assert len(points_in_line(text)) == 4
    assert points_in_line(WORKER_EMF[:-1]) == []


def test_each_dimension_set_is_a_series_of_its_own_and_a_single_value_counts():
    document = {
        "_aws": {
            "CloudWatchMetrics": [
                {
                    "Namespace": "MisterSmith",
                    "Dimensions": [["service"], ["service", "task_type"]],
                    "Metrics": [{"Name": "TasksFailed", "Unit": "Count"}],
                }
            ]
        },
        "service": "w",
        "task_type": "execute",
        "TasksFailed": 1,
    }

    assert [point.key.dimensions for point in data_points(document)] == [
        (("service", "w"),),
        (("service", "w"), ("task_type", "execute")),
    ]


@pytest.mark.parametrize(
    "document",
    [
        {"level": "INFO", "message": 'mentions "_aws" in a message'},
        {"_aws": "not a directive"},
        {"_aws": {"CloudWatchMetrics": "no list"}},
        {"_aws": {"CloudWatchMetrics": [{"Metrics": [{"Name": "Missing"}]}]}},
        {"_aws": {"CloudWatchMetrics": [{"Metrics": [{"Name": "Text"}]}]}, "Text": "1"},
        {"_aws": {"CloudWatchMetrics": [{"Metrics": [{"Name": "Flag"}]}]}, "Flag": True},
        {"_aws": {"CloudWatchMetrics": [{"Metrics": [{"Unit": "Count"}]}]}},
    ],
)
def test_what_is_not_a_metric_value_gives_no_point(document):
    assert data_points(document) == []
    assert points_in_line(json.dumps(document)) == []


def test_the_table_sums_counts_and_gives_mean_and_maximum_of_times():
    series = aggregate(points_in_line(WORKER_EMF))
    aggregate(points_in_line(WORKER_EMF.replace("120.0", "60.5")), series)

    duration = series[SeriesKey("TaskDuration", WORKER, "Milliseconds", "MisterSmith")]
    assert (duration.count, duration.total, duration.maximum) == (4, 260.5, 120.0)
    assert math.isclose(duration.mean, 65.125)
    assert summary_table(series).splitlines() == [
        "metric          dimensions                  unit          count    sum   avg  max",
        "TaskDuration    service=mistersmith-worker  Milliseconds      4  260.5  65.1  120",
        "TasksSucceeded  service=mistersmith-worker  Count             4      4",
    ]


def test_the_collector_keeps_the_emf_lines_it_is_fed_and_ignores_the_others():
    collector = MetricsCollector()
    collector.feed("worker-1", LOG_LINE)
    collector.feed("worker-1", WORKER_EMF)
    collector.feed("analyze", WORKER_EMF[:80])

    assert {key.name: values.count for key, values in collector.series().items()} == {
        "TasksSucceeded": 2,
        "TaskDuration": 2,
    }
    assert MetricsCollector().table() == "no metrics were emitted"


# --- prefixing -----------------------------------------------------------------------------------


def test_a_line_written_inside_a_component_goes_out_whole_with_its_name():
    shown, out = console()
    target = io.StringIO()
    stream = ComponentStream(shown, target)

    with component("router"):
        # print() writes the text and its newline apart.
        stream.write(LOG_LINE)
        stream.write("\n")

    assert out.getvalue() == f"router | {LOG_LINE}\n"
    assert target.getvalue() == ""


def test_what_is_written_outside_any_component_passes_through_as_it_is():
    shown, out = console()
    target = io.StringIO()

    ComponentStream(shown, target).write("the demo's table\n")

    assert target.getvalue() == "the demo's table\n"
    assert out.getvalue() == ""


def test_names_are_padded_to_the_widest_so_the_lines_align():
    shown, out = console()
    stream = ComponentStream(shown, io.StringIO())
    for name in ("intake", "dead_letter", "router"):
        with component(name):
            stream.write("{}\n")

    assert out.getvalue().splitlines()[1:] == ["dead_letter | {}", "router      | {}"]


def test_threads_writing_pieces_at_once_each_get_their_own_whole_lines():
    shown, out = console()
    stream = ComponentStream(shown, io.StringIO())
    first_piece_written, other_line_written = threading.Event(), threading.Event()

    def analyze() -> None:
        with component("analyze"):
            stream.write('{"a":')
            first_piece_written.set()
            other_line_written.wait(5)
            stream.write("1}\n")

    def autoscaler() -> None:
        first_piece_written.wait(5)
        with component("autoscaler"):
            stream.write('{"b":2}\n')
        other_line_written.set()

    threads = [threading.Thread(target=analyze), threading.Thread(target=autoscaler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    assert out.getvalue().splitlines() == ['autoscaler | {"b":2}', 'analyze    | {"a":1}']


def test_listeners_see_every_line_with_its_name_until_removed():
    shown, out = console()
    seen: list[tuple[str, str]] = []

    def listener(name: str, line: str) -> None:
        seen.append((name, line))

    shown.add_listener(listener)
    shown.emit("intake", "one")
    shown.remove_listener(listener)
    shown.emit("worker-0", "two")

    assert seen == [("intake", "one")]
    assert out.getvalue().splitlines() == ["intake | one", "worker-0 | two"]


def test_the_api_app_s_lines_and_metrics_go_out_as_the_function_s_also_from_its_thread_pool():
    shown, out = console()
    stream = ComponentStream(shown, io.StringIO())

    async def app(scope, receive, send) -> None:
        # FastAPI runs plain endpoints in a thread pool: the name must follow them there.
        await asyncio.to_thread(stream.write, f"{LOG_LINE}\n")
        await asyncio.to_thread(stream.write, f"{WORKER_EMF}\n")

    asyncio.run(as_function("intake", "IntakeFunction", app)({}, None, None))

    assert out.getvalue().splitlines() == [f"intake | {LOG_LINE}", f"intake | {WORKER_EMF}"]


def test_a_function_s_name_is_its_code_folder():
    template = Template.load()

    assert component_name(template, "DeadLetterFunction") == "dead_letter"
    assert component_name(template, "IntakeFunction") == "intake"


# --- worker log files ----------------------------------------------------------------------------


def followed(tmp_path: Path, process: Exited) -> tuple[LogFollower, io.StringIO, Path]:
    shown, out = console()
    path = tmp_path / "worker-1.log"
    path.write_text("a line of an earlier run\n")
    follower = LogFollower(shown)
    follower.follow(path, "worker-1", process, path.stat().st_size)
    return follower, out, path


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


def test_a_worker_s_lines_from_where_it_started_go_out_with_its_name(tmp_path):
    follower, out, path = followed(tmp_path, Exited(None))
    append(path, f"{LOG_LINE}\n{{")
    follower.poll()
    append(path, '"b":2}\n')
    follower.poll()

    assert out.getvalue().splitlines() == [f"worker-1 | {LOG_LINE}", 'worker-1 | {"b":2}']
    assert path.read_text().startswith("a line of an earlier run\n")


def test_a_worker_that_exited_is_read_to_the_end_then_let_go(tmp_path):
    follower, out, path = followed(tmp_path, Exited(-9))
    append(path, f"{LOG_LINE}\ncut mid-li")
    follower.poll()
    append(path, "written after\n")
    follower.poll()

    assert out.getvalue().splitlines() == [f"worker-1 | {LOG_LINE}", "worker-1 | cut mid-li"]


def test_a_replacement_on_the_same_file_continues_where_the_last_one_was_cut(tmp_path):
    follower, out, path = followed(tmp_path, Exited(None))
    append(path, WORKER_EMF[:100])
    follower.follow(path, "worker-1", Exited(None), path.stat().st_size)
    append(path, f"{WORKER_EMF}\n")
    follower.poll()

    [line] = out.getvalue().splitlines()
    assert line == f"worker-1 | {WORKER_EMF[:100]}{WORKER_EMF}"
    assert len(points_in_line(line)) == 4


def test_a_fresh_file_for_a_new_worker_is_read_from_its_start(tmp_path):
    # Tests delete a worker's log before they start it again.
    follower, out, path = followed(tmp_path, Exited(None))
    path.unlink()
    path.touch()
    follower.follow(path, "worker-1", Exited(None), 0)
    append(path, "x\n")
    follower.poll()

    assert out.getvalue() == "worker-1 | x\n"


def test_a_truncated_file_is_read_from_its_start(tmp_path):
    follower, out, path = followed(tmp_path, Exited(None))
    path.write_text("x\n")
    follower.poll()

    assert out.getvalue() == "worker-1 | x\n"


def test_the_follower_thread_polls_on_its_own(tmp_path):
    follower, out, path = followed(tmp_path, Exited(None))
    follower.interval_seconds = 0.01
    follower.start()
    append(path, "first\n")
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    follower.stop(timeout_seconds=5)

    assert out.getvalue() == "worker-1 | first\n"


def test_stopping_the_follower_is_quick_and_reads_what_was_left(tmp_path):
    follower, out, path = followed(tmp_path, Exited(None))
    follower.interval_seconds = 60
    follower.start()
    append(path, "last\n")
    started = time.monotonic()
    follower.stop(timeout_seconds=5)
    append(path, "after the stop\n")
    time.sleep(0.05)

    assert time.monotonic() - started < 1
    assert out.getvalue() == "worker-1 | last\n"


# --- compact view and the command line ------------------------------------------------------------


def test_compact_line_shows_level_message_and_task_id():
    line = json.dumps({"level": "INFO", "message": "task routed", "correlation_id": "t-1", "service": "x"})
    assert compact_line(line) == "INFO    | task routed | t-1"


def test_compact_line_leaves_out_emf_and_keeps_other_text():
    assert compact_line(WORKER_EMF) is None
    assert compact_line("Traceback (most recent call last):") == "Traceback (most recent call last):"


def test_compact_console_writes_the_short_form_with_the_component():
    out = io.StringIO()
    Console(out, compact=True).emit("router", json.dumps({"level": "WARNING", "message": "skipped"}))
    assert out.getvalue() == "router | WARNING | skipped\n"


def test_local_stack_help_describes_each_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        local_stack_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "moto's port (the AWS endpoint) (default: 5000)" in text
    assert "period of the scheduled functions (the autoscaler) (default: 60.0)" in text
    assert "--compact" in text
