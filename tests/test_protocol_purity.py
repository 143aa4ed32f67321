"""txhyco.protocol is sans-IO: importing it loads no Twisted, no Autobahn, no sockets code of ours."""
import ast
import os
import subprocess
import sys

import txhyco.protocol

PROTOCOL_DIR = os.path.dirname(txhyco.protocol.__file__)
FORBIDDEN = ("twisted", "autobahn", "txaio", "socket", "asyncio", "time")


def test_no_forbidden_imports_in_source():
    for name in sorted(os.listdir(PROTOCOL_DIR)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(PROTOCOL_DIR, name), encoding="utf-8").read())
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            for module in modules:
                assert module.split(".")[0] not in FORBIDDEN, f"{name} imports {module}"


def test_importing_the_core_loads_no_twisted_or_autobahn():
    code = (
        "import sys, txhyco.protocol\n"
        "import txhyco.protocol.addresses, txhyco.protocol.sas, txhyco.protocol.messages, txhyco.protocol.http\n"
        "import txhyco.protocol.frames, txhyco.protocol.grammar, txhyco.protocol.channel\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'twisted', 'autobahn', 'txaio'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr



def test_public_api_imports_lightly_and_resolves():
    code = (
        "import sys, txhyco\n"
        "light = not [m for m in sys.modules if m.split('.')[0] in ('twisted', 'autobahn')]\n"
        "missing = [n for n in txhyco.__all__ if getattr(txhyco, n, None) is None]\n"
        "print(light, missing)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "True []", out.stdout + out.stderr
