"""`onehci dossier`: the printable file of the site, read back from the PDF itself with poppler's
tools (pdftotext for the words, pdftoppm for the pages as a printer would get them)."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from click.testing import CliRunner

from installer import sitefile
from installer.cli.main import cli
from installer.plan import make_plan
from installer.resources import profiles
from tests.conftest import SSH_KEY

HASH = "$6$onehcitest$AfQRb6nYJf3eSDTJgeIIzGXP3gDu3XfXSU3RKLNk5mxSIOVmlaBZv0IYcAGdSOOLpEeV.2mh00gKnLhnEsUGP0"


@pytest.fixture
def five_node(tmp_path):
    """The five-node profile with a root password hash, which must stay out of the dossier."""
    text = profiles()["five-node"].read_text()
    assert "\n  root_password_hash:" not in text
    text = text.replace("access:\n", f"access:\n  root_password_hash: '{HASH}'\n", 1)
    path = tmp_path / "site.yml"
    path.write_text(text)
    return path


def test_the_pdf_holds_every_node_and_address_and_no_secret(five_node, tmp_path):
    pdf = tmp_path / "dossier.pdf"
    result = CliRunner().invoke(cli, ["dossier", str(five_node), "--pdf", str(pdf)])
    assert result.exit_code == 0, result.output
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    plan = make_plan(sitefile.load(five_node).site)
    flat = "".join(text.split())  # a long path wraps across lines: compare without the spacing

    def holds(command: str) -> bool:
        return "".join(command.split()) in flat
    for node in plan.nodes:
        assert node.hostname in text and node.ip in text and node.mac in text
        # its page says what to do when it fails, as the day-2 verbs allow it
        if node.has("frontend"):
            assert holds("does not rebuild a frontend") and not holds(f"onehci rebuild {node.hostname} {five_node}")
        else:
            assert holds(f"onehci rebuild {node.hostname} {five_node}")
    assert holds(f"onehci recover-master {five_node} --from {plan.moosefs.metaloggers[0]}")
    for address in (plan.networks.management.cidr, plan.networks.management.gateway, plan.networks.vms.cidr,
                    plan.networks.bootstrap.address):
        assert address in text
    assert hashlib.sha256(five_node.read_bytes()).hexdigest() in flat
    assert "$6$" not in text and "onehcitest" not in text
    assert SSH_KEY.split()[1][:20] not in text and "ssh-ed25519" not in text
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == 2 + len(plan.nodes)  # the overview, its second page, one page per node
    assert all(p.stat().st_size > 2000 for p in pngs)


def test_the_html_draws_the_network_with_every_node(five_node, tmp_path):
    page = tmp_path / "dossier.html"
    result = CliRunner().invoke(cli, ["dossier", str(five_node), "--html", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    svg = html[html.index("<svg"):html.index("</svg>")]
    plan = make_plan(sitefile.load(five_node).site)
    assert all(n.hostname in svg and n.ip in svg for n in plan.nodes)
    assert HASH not in html


def test_an_invalid_site_is_refused_and_nothing_is_written(five_node, tmp_path):
    five_node.write_text(five_node.read_text().replace("goal: 2", "goal: 12"))
    pdf = tmp_path / "dossier.pdf"
    result = CliRunner().invoke(cli, ["dossier", str(five_node), "--pdf", str(pdf)])
    assert result.exit_code == 1
    assert "storage.goal" in result.output and "nothing was written" in result.output
    assert not pdf.exists()


@pytest.mark.parametrize("args, message", [
    ([], "say where to write the dossier: --pdf FILE, --html FILE or both"),
    (["--pdf", "/nonexistent-dir/dossier.pdf"], "cannot write /nonexistent-dir/dossier.pdf: the directory "
                                                "/nonexistent-dir does not exist"),
])
def test_where_to_write_is_checked_first(five_node, args, message):
    result = CliRunner().invoke(cli, ["dossier", str(five_node), *args])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {message}"
