"""`onehci add-node`'s check, before anything is written: the node must be new to the deploys,
and no deployed node may move. The install and the deploy run on the lab
(tests/lab/test_rebuild.py, last test)."""

from __future__ import annotations

import pytest

from installer import journal, state
from installer.deploy import DEPLOYED
from installer.errors import OnehciError
from installer.operations.add_node import add_node, check, moved
from installer.plan import make_plan


@pytest.fixture
def loaded(base_loaded):
    return base_loaded


def deployed(loaded, **nodes):
    plan = make_plan(loaded.site)
    record = {n: {"ip": plan.node(n).ip, "mac": plan.node(n).mac} for n in ("n1", "n2")}
    record.update(nodes)
    state.write_json(state.ensure(state.state_dir(loaded.path)) / DEPLOYED, record)


def test_a_new_node_next_to_unchanged_deployed_ones_passes(loaded):
    deployed(loaded)
    found = check(loaded, make_plan(loaded.site), "n3")
    assert found["node"] == "n3" and found["unchanged"] == ["n1", "n2"]


def test_every_refusal_says_why_and_leaves_no_operation(loaded):
    plan = make_plan(loaded.site)
    with pytest.raises(OnehciError, match=r"no finished deploy of .* is recorded"):
        add_node(loaded, "n3", say=lambda _: None)
    deployed(loaded)
    with pytest.raises(OnehciError, match=r"n9 is not in .*: write it under `nodes:` first"):
        add_node(loaded, "n9", say=lambda _: None)
    with pytest.raises(OnehciError, match=r"n2 was already deployed \(at 192\.168\.10\.12\): to reinstall it, use "
                                          r"`onehci rebuild n2`"):
        add_node(loaded, "n2", say=lambda _: None)
    deployed(loaded, n2={"ip": "192.168.10.99", "mac": plan.node("n2").mac})
    with pytest.raises(OnehciError, match=r"adding n3 would change deployed nodes: n2 would move from ip "
                                          r"192\.168\.10\.99 to 192\.168\.10\.12\. Nothing was changed"):
        add_node(loaded, "n3", say=lambda _: None)
    assert journal.current(loaded.path) is None
    assert not (state.state_dir(loaded.path) / "operations").exists()


def test_a_node_removed_from_the_site_or_a_changed_mac_is_a_move(loaded):
    plan = make_plan(loaded.site)
    record = {"n1": {"ip": plan.node("n1").ip, "mac": "52:54:00:00:00:99"},
              "gone": {"ip": "192.168.10.50", "mac": "52:54:00:00:00:50"}}
    assert moved(record, plan) == ["gone (deployed at 192.168.10.50) is no longer in the site",
                                   f"n1 would move from mac 52:54:00:00:00:99 to {plan.node('n1').mac}"]
