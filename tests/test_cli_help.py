"""The command line explains itself: every option of every subcommand has help and shows its
default, `infodyn --help` starts with the three commands a newcomer needs, and the hint printed
for a folder without a manifest is a command that works once its placeholders are filled."""
import argparse
import re
import shlex

import pytest

from infodyn.cli import HelpFormatter, build_parser, main


def _subparsers(parser):
    sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    return sub, dict(sub.choices)


def _flat(text):
    return re.sub(r"\s+", " ", text)


def test_every_option_of_every_subcommand_has_help():
    _, subs = _subparsers(build_parser())
    assert {"demo", "init", "analyze", "plot", "estimate", "estimators", "supervision", "ctc-demo"} <= set(subs)
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in subs.items() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == []


def test_every_default_is_shown():
    _, subs = _subparsers(build_parser())
    hidden = []
    for name, p in subs.items():
        assert p.formatter_class is HelpFormatter
        fmt = p._get_formatter()
        for a in p._actions:
            if a.default in (None, False, argparse.SUPPRESS) or isinstance(a, argparse._HelpAction):
                continue
            text = fmt._get_help_string(a) % {"default": a.default, "prog": p.prog}
            if "default" not in text:
                hidden.append(f"{name} {a.option_strings}")
        text = _flat(p.format_help())
        assert "(default: None)" not in text and "(default: False)" not in text, name
    assert hidden == []
    _, subs = _subparsers(build_parser())
    analyze = _flat(subs["analyze"].format_help())
    assert "cap on source samples" in analyze and "(default: 4096)" in analyze
    assert "(-1: one per CPU) (default: 1)" in analyze
    assert "(default: auto)" in analyze
    ctc = _flat(subs["ctc-demo"].format_help())
    assert "(default: digits mnist1d)" in ctc  # lists print as the command line takes them


def test_default_measure_list_is_the_registry_and_not_broken_mid_word(monkeypatch):
    from infodyn.analysis.measures import DEFAULT_MEASURES

    monkeypatch.setenv("COLUMNS", "80")
    _, subs = _subparsers(build_parser())
    text = subs["analyze"].format_help()
    m = re.search(r"\(default: ([a-z_,\s]+)\)", text)
    shown = [w.strip() for w in m.group(1).split(",")]
    assert shown == list(DEFAULT_MEASURES)
    for line in text.splitlines():  # no line ends inside a measure name
        assert not re.search(r"[a-z]_$", line.rstrip()), line
    from infodyn.estimators import planes_available

    flat = _flat(text)
    assert all(re.search(rf"\b{m}\b", flat) for m in planes_available())  # every plane method is named


def test_top_level_help_starts_with_demo_init_analyze(capsys):
    text = build_parser().format_help()
    first = [m.group(1) for m in re.finditer(r"^\s+infodyn (\w+)", text, re.M)][:3]
    assert first == ["demo", "init", "analyze"]
    start = text.index("Start here")
    assert start < text.index("commands:")
    listed = re.findall(r"^    (\S+)", text[text.index("commands:"):], re.M)
    assert listed[:3] == ["demo", "init", "analyze"]
    assert main([]) == 2 and "Start here" in capsys.readouterr().out


def test_estimate_ci_help_names_the_interval_each_method_uses():
    _, subs = _subparsers(build_parser())
    text = _flat(subs["estimate"].format_help())
    assert "half-sample subsampling" in text and "bootstrap over rows for gaussian" in text


def test_no_manifest_hint_is_a_command_that_works(tmp_path, capsys):
    empty = tmp_path / "ckpts"
    empty.mkdir()
    assert main(["analyze", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    hint = re.search(r"`(infodyn init [^`]+)`", err)
    assert hint, err
    cmd = hint.group(1)
    assert "--model" in cmd and "--source" in cmd
    filled = (cmd.replace("MODULE:CALLABLE", "infodyn.models:ib12bit_net").replace("DATA", "ib12bit")
              .replace("LAYER,...", "fc1,fc2"))
    assert not re.search(r"\b[A-Z]{3,}\b", filled.replace(str(empty), "")), filled  # no placeholder left
    argv = shlex.split(filled)[1:]
    assert main(argv) == 0, capsys.readouterr().err
    text = (empty / "infodyn.yaml").read_text()
    assert "ib12bit_net" in text and "fc2" in text


def test_demo_progress_lines_say_stage_elapsed_and_time_left():
    from infodyn import demo

    lines = []
    prog = demo._Progress([2.0, 2.0, 4.0], lines.append)
    prog.start("training a")
    prog.finish("trained a")
    prog.start("training b")
    assert re.match(r"\[\s*\d+ s\] stage 1/3: training a \(about 8 s left\)", lines[0]), lines[0]
    assert re.match(r"\[\s*\d+ s\]   trained a \(\d+\.\d s\)", lines[1]), lines[1]
    # stage a took ~0 s of its predicted 2: the speed is clamped at 5x the prediction, 6 s left -> 1 s
    assert re.search(r"stage 2/3: training b \(about 1 s left\)", lines[2]), lines[2]
    full = demo._stage_estimates(demo.plan(quick=False))
    quick = demo._stage_estimates(demo.plan(quick=True))
    assert len(full) == len(demo.plan().runs) + len(demo.plan().groups) and sum(quick) < sum(full)
