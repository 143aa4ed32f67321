"""examples/deploy/: each systemd unit is well formed and its ExecStart is a txhyco command that parses."""
from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from txhyco.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(path)
    return unit


def test_there_are_units():
    names = {p.name for p in UNITS}
    assert {"txhyco-relay.service", "txhyco-up.service"} <= names


def test_the_up_example_file_loads():
    from txhyco.cli.upfile import load

    entries = load(str(DEPLOY / "tunnels.toml"))
    assert sorted(entries) == [("connect", "metrics-remote"), ("listen", "db"), ("listen", "web")]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_names_a_txhyco_command_whose_options_parse(path):
    unit = read_unit(path)
    assert unit["Unit"]["Description"]
    assert unit["Install"]["WantedBy"]
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).name == "txhyco"
    argv = [a.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/x") for a in argv[1:]]
    args = build_parser().parse_args(argv)
    assert getattr(args, "run", None) is not None, argv


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_finds_nothing(path, tmp_path):
    # verify wants ExecStart's program to exist: this interpreter running txhyco's CLI stands in.
    text = path.read_text()
    runner = f"{shlex.quote(sys.executable)} -m txhyco.cli"
    copy = tmp_path / path.name
    copy.write_text(text.replace("/usr/local/bin/txhyco", runner))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if path.name in line or "Unknown" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
