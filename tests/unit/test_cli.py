"""The command line as a new user meets it: one clear line for a mistake, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import build_parser, main
from pipeline.tools.simulator import SimulatorConfig, generate

#: A port nothing listens on: a command that tried to connect would hang or fail there.
UNREACHABLE = "127.0.0.1:9"


def test_replay_of_a_missing_file_prints_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["replay", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"cxstream: error: {missing}: no such file\n"


def test_replay_of_a_directory_prints_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"cxstream: error: {tmp_path}: is a directory, not a file\n"


def test_produce_of_a_missing_file_says_so_before_it_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["produce", str(missing), "--bootstrap", UNREACHABLE]) == 2
    assert capsys.readouterr().err == f"cxstream: error: {missing}: no such file\n"


def test_config_works_before_and_after_the_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("kafka: {topic_prefix: zz}\n")
    before = build_parser().parse_args(["--config", str(config), "topics"])
    after = build_parser().parse_args(["topics", "--config", str(config)])
    assert before.config == after.config == config


def test_config_after_the_subcommand_wins_over_one_before(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--config", "a.yaml", "replay", "x", "--config", "b.yaml"])
    assert args.config == Path("b.yaml")


def _events_file(tmp_path: Path, extra_lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    config = SimulatorConfig(customers=5, seed=1, count=40, malformed_share=0.0)
    lines = [item.to_json_line().rstrip("\n") for item in generate(config)] + extra_lines
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_replay_that_rejected_events_exits_non_zero_and_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _events_file(tmp_path, ['{"not": "an event"}'])
    out = tmp_path / "out"
    assert main(["replay", str(events), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"1 event(s) rejected; see {out / 'rejected.jsonl'}" in err


def test_a_replay_may_accept_rejected_events_when_asked(tmp_path: Path) -> None:
    events = _events_file(tmp_path, ['{"not": "an event"}'])
    assert main(["replay", str(events), "--out", str(tmp_path / "o"), "--allow-rejected"]) == 0


def test_every_option_has_help_text_and_shows_its_default() -> None:
    parser = build_parser()
    undocumented = []
    for sub in _subparsers(parser):
        for action in sub._actions:  # argparse has no public list of a parser's options
            if action.option_strings and action.help in (None, ""):
                undocumented.append(f"{sub.prog} {action.option_strings[0]}")
    assert undocumented == []
    assert "(default: 50000)" in _subparser(parser, "simulate").format_help().replace("\n", " ")


def _subparsers(parser):  # type: ignore[no-untyped-def]
    yield parser
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):
            for sub in action.choices.values():
                yield from _subparsers(sub)


def _subparser(parser, name):  # type: ignore[no-untyped-def]
    return next(sub for sub in _subparsers(parser) if sub.prog.endswith(f" {name}"))
