"""``python -m txhyco`` and ``txhyco completion``: the completion script works in a real bash."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def txhyco(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "txhyco", *args], env=env, capture_output=True, text=True, timeout=60)


def complete_in_bash(script: str, *words: str) -> list[str]:
    """What bash's completion function offers for the command line ``words`` (the last one being typed)."""
    line = " ".join(words)
    probe = (
        f"{script}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
        "_shtab_txhyco txhyco \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_python_dash_m_txhyco_is_the_command():
    done = txhyco("--version")
    assert done.returncode == 0 and done.stdout.startswith("txhyco "), done


def test_bash_completion_offers_commands_and_options():
    done = txhyco("completion", "bash")
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert complete_in_bash(script, "txhyco", "lis") == ["listen"]
    assert "--forward" in complete_in_bash(script, "txhyco", "listen", "--fo")
    assert complete_in_bash(script, "txhyco", "completion", "z") == ["zsh"]


def test_zsh_completion_script():
    done = txhyco("completion", "zsh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#compdef txhyco")
    for name in ("relay", "listen", "connect", "request", "--forward", "--connection-string"):
        assert name in done.stdout


def test_unknown_shell_is_a_usage_error():
    done = txhyco("completion", "fish")
    assert done.returncode == 2 and "invalid choice" in done.stderr and "Traceback" not in done.stderr
