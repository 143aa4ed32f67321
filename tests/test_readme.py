"""Every command in README.md is run by a test: here, or by the test a block names.

Each ``sh``/``python`` block carries a ``<!-- readme-test: ... -->`` line:

* ``run`` -- run with bash in a scratch directory; it must exit 0;
* ``background "TEXT"`` -- a long-running command: started, it must print TEXT,
  then it is stopped (SIGTERM);
* ``python-background "TEXT"`` -- the same for a Python block;
* ``pytest`` -- a block that is a test file;
* ``mirrors tests/FILE.py::TEST`` -- exercised, exactly, by that test.

The scratch directory has ``examples/`` and the README's ``relay.toml``; ``PATH``
starts with the venv's bin; ``HYCO_CONNECTION_STRING`` names a relay running in
this process, whose port replaces 9090 in blocks that talk to an existing relay.
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"^<!-- readme-test: (?P<how>.*?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)\n```", re.S | re.M)
ANY_BLOCK = re.compile(r"^```(sh|python)\n", re.M)


def blocks():
    text = open(README, encoding="utf-8").read()
    return [(m.group("how"), m.group("lang"), m.group("body")) for m in BLOCK.finditer(text)]


def test_every_command_block_says_how_it_is_tested():
    text = open(README, encoding="utf-8").read()
    assert len(ANY_BLOCK.findall(text)) == len([b for b in blocks() if b[1] in ("sh", "python")])
    for how, lang, body in blocks():
        if how.startswith("mirrors "):
            path, _, name = how.split(" ", 1)[1].partition("::")
            source = open(os.path.join(ROOT, path), encoding="utf-8").read()
            assert f"def {name}(" in source, f"{how}: no such test"


def _scratch(tmp_path, relay):
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    toml = re.search(r"```toml\n(# relay\.toml\n.*?)\n```", open(README, encoding="utf-8").read(), re.S)
    (tmp_path / "relay.toml").write_text(toml.group(1))
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["HYCO_CONNECTION_STRING"] = relay.connection_string.format()
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CI", None)
    return env


def _run(body, env, cwd):
    done = subprocess.run(["bash", "-e", "-c", body], env=env, cwd=cwd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"block failed ({done.returncode}):\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def _background(argv, wanted, env, cwd, timeout=40):
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while wanted.encode() not in seen:
            if time.monotonic() > deadline or proc.poll() is not None:
                time.sleep(0.2)
                seen += proc.stdout.read() or b""
                raise AssertionError(f"{' '.join(argv)!r} never printed {wanted!r}:\n{seen.decode(errors='replace')}")
            chunk = proc.stdout.read()
            if chunk:
                seen += chunk
            else:
                time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert b"Traceback" not in seen, seen.decode(errors="replace")


RUNNABLE = [b for b in blocks() if not b[0].startswith("mirrors ")]


@pytest.mark.parametrize("how, lang, body", RUNNABLE, ids=[f"{i}-{b[0].split()[0]}" for i, b in enumerate(RUNNABLE)])
@pytest_twisted.inlineCallbacks
def test_readme_block(how, lang, body, relay, tmp_path):
    env = _scratch(tmp_path, relay)
    talks_to_relay = "127.0.0.1:9090" in body and "txhyco relay" not in body
    if talks_to_relay:
        body = body.replace("127.0.0.1:9090", relay.host)
    wanted = re.search(r'"(.*)"', how).group(1) if '"' in how else None
    if how == "run":
        before = set(os.listdir(tmp_path))
        yield threads.deferToThread(_run, body, env, str(tmp_path))
        # A reader runs these in their own tree: scratch files go to a temporary directory.
        assert set(os.listdir(tmp_path)) == before, f"the block left files behind:\n{body}"
    elif how.startswith("background "):
        yield threads.deferToThread(_background, ["bash", "-e", "-c", body], wanted, env, str(tmp_path))
    elif how.startswith("python-background "):
        script = tmp_path / "snippet.py"
        script.write_text(body)
        yield threads.deferToThread(_background, [sys.executable, str(script)], wanted, env, str(tmp_path))
    elif how == "pytest":
        test_file = tmp_path / "test_snippet.py"
        test_file.write_text(body.replace("...", "pass") + "\n")
        yield threads.deferToThread(_run, f"{sys.executable} -m pytest -q -p no:cacheprovider {test_file}", env, str(tmp_path))
    else:
        pytest.fail(f"unknown readme-test annotation {how!r}")
