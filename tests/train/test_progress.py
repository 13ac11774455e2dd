"""Progress: a bar on a terminal, one plain line per log step anywhere else (files, pipes, SLURM logs)."""

from __future__ import annotations

import io

from metaslot.train.progress import (
    BarProgress,
    LineProgress,
    QuietProgress,
    format_duration,
    format_progress_line,
    make_progress,
    progress_style,
)


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_style_follows_the_stream() -> None:
    assert progress_style(io.StringIO(), enabled=True) == "lines"
    assert progress_style(Terminal(), enabled=True) == "bar"
    assert progress_style(Terminal(), enabled=False) == "off"
    assert isinstance(
        make_progress(10, initial=0, description="r", every=1, enabled=True, stream=io.StringIO()),
        LineProgress,
    )
    assert isinstance(
        make_progress(10, initial=0, description="r", every=1, enabled=True, stream=Terminal()), BarProgress
    )
    assert isinstance(
        make_progress(10, initial=0, description="r", every=1, enabled=False, stream=Terminal()),
        QuietProgress,
    )


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(seconds) for seconds in (0.0, 9.0, 59.6, 586.0, 3720.0, 90061.0)] == [
        "0s", "9s", "1m00s", "9m46s", "1h02m", "25h01m",
    ]  # fmt: skip


def test_line_names_step_values_rate_and_eta() -> None:
    line = format_progress_line("default-job", 120, 2000, {"loss": "0.0123", "lr": "1.00e-03"}, 3.2)
    assert line == "default-job step 120/2000 (6%) loss=0.0123 lr=1.00e-03 3.2 steps/s eta 9m48s"
    assert format_progress_line("r", 0, 10, {}, None) == "r step 0/10 (0%)"


def test_non_terminal_gets_one_plain_line_per_log_step() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = LineProgress(
        10, initial=0, description="run", every=4, stream=stream, messages=stream, clock=clock
    )
    for step in range(1, 11):
        clock.now += 0.5  # two steps per second
        progress.advance(step, {"loss": f"{1 / step:.3g}"})
        if step == 6:
            progress.write("step 6: val ari=0.5")
    progress.close()
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == [
        "run step 4/10 (40%) loss=0.25 2 steps/s eta 3s",
        "step 6: val ari=0.5",
        "run step 8/10 (80%) loss=0.125 2 steps/s eta 1s",
        "run step 10/10 (100%) loss=0.1 2 steps/s eta 0s",
    ]


def test_resumed_run_counts_the_rate_from_where_it_resumed() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = LineProgress(
        100, initial=50, description="run", every=10, stream=stream, messages=stream, clock=clock
    )
    clock.now += 10.0
    progress.advance(60, {})
    assert stream.getvalue() == "run step 60/100 (60%) 1 steps/s eta 40s\n"


def test_terminal_gets_the_bar_with_its_values() -> None:
    stream, messages = Terminal(), io.StringIO()
    progress = make_progress(
        5, initial=0, description="run", every=1, enabled=True, stream=stream, messages=messages
    )
    for step in range(1, 6):
        progress.advance(step, {"loss": "0.5"})
    progress.write("done")
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and "5/5" in text and "loss=0.5" in text and messages.getvalue() == "done\n"


def test_messages_and_progress_lines_go_to_their_own_streams() -> None:
    stream, messages = io.StringIO(), io.StringIO()
    progress = make_progress(
        2, initial=0, description="run", every=1, enabled=True, stream=stream, messages=messages
    )
    progress.advance(1, {})
    progress.write("step 1: val ari=0.5")
    assert (
        stream.getvalue().startswith("run step 1/2 (50%)") and messages.getvalue() == "step 1: val ari=0.5\n"
    )


def test_quiet_progress_still_prints_messages() -> None:
    stream, messages = Terminal(), io.StringIO()
    progress = make_progress(
        5, initial=0, description="run", every=1, enabled=False, stream=stream, messages=messages
    )
    progress.advance(5, {"loss": "0.5"})
    progress.write("step 5: val ari=0.5")
    assert stream.getvalue() == "" and messages.getvalue() == "step 5: val ari=0.5\n"
