"""Files named on the command line are what their option expects, or the command stops with one sentence."""
import pytest

from txhyco.cli import main

CONNECTION_STRING = "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=k;SharedAccessKey=dg==;UseDevelopmentEmulator=true"


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("content, problem", [
    ("c2VjcmV0\nb3RoZXI=\n", "holds 2 lines"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n", "holds 3 lines"),
    ("\n\n", "is empty"),
])
@pytest.mark.parametrize("command", [["relay", "--listen", "tcp:0:interface=127.0.0.1"],
                                     ["token", "--namespace", "myns", "--path", "hc"]])
def test_key_file_must_hold_the_key_alone(capsys, tmp_path, content, problem, command):
    path = tmp_path / "relay.key"
    path.write_text(content)
    assert main([*command, "--key-file", str(path)]) == 1
    line = one_line(capsys)
    assert str(path) in line and problem in line and "one line" in line
    assert "b3RoZXI" not in line and "MIIE" not in line  # the file's content is never shown


def test_key_file_that_is_not_text(capsys, tmp_path):
    path = tmp_path / "relay.key"
    path.write_bytes(b"\xff\xfe\x00\x01")
    assert main(["token", "--namespace", "myns", "--path", "hc", "--key-file", str(path)]) == 1
    assert "not UTF-8 text" in one_line(capsys)


def test_key_file_with_trailing_blank_lines_is_fine(capsys, tmp_path):
    path = tmp_path / "relay.key"
    path.write_text("c2VjcmV0\n\n")
    assert main(["token", "--namespace", "myns", "--path", "hc", "--key-file", str(path)]) == 0
    assert capsys.readouterr().out.startswith("SharedAccessSignature ")


@pytest.mark.parametrize("command", [["listen", "hc", "--echo"], ["connect", "hc"], ["request", "hc", "/"]])
def test_ca_file_must_hold_a_certificate(capsys, tmp_path, command):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    assert main([*command, "--connection-string", CONNECTION_STRING, "--ca-file", str(not_pem)]) == 2
    line = one_line(capsys)
    assert "--ca-file" in line and "does not hold a PEM certificate" in line
    assert main([*command, "--connection-string", CONNECTION_STRING, "--ca-file", str(tmp_path / "absent.pem")]) == 2
    assert "cannot read" in one_line(capsys)


def test_upstream_ca_file_must_hold_a_certificate(capsys, tmp_path):
    not_pem = tmp_path / "upstream.pem"
    not_pem.write_text("not a certificate\n")
    assert main(["listen", "hc", "--connection-string", CONNECTION_STRING, "--http", "https://127.0.0.1:8443",
                 "--upstream-ca-file", str(not_pem)]) == 2
    line = one_line(capsys)
    assert "--upstream-ca-file" in line and "does not hold a PEM certificate" in line
