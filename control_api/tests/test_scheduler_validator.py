"""HttpMinerValidator against a stand-in validator over HTTP: each call signed (D2, checked
with bittensor-wallet), status codes mapped, 5xx retried, streams parsed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bittensor_wallet import Keypair
from control_api.clients.miner_validator import HttpMinerValidator, read_stream
from control_api.clients.validator import ValidatorError

from tests.sched_validator import MinerApiStandin


@pytest.fixture()
def standin(miner_key: Keypair) -> Iterator[MinerApiStandin]:
    s = MinerApiStandin(miner_key.ss58_address).start()
    yield s
    s.stop()


@pytest.fixture()
def client(miner_key: Keypair) -> Iterator[HttpMinerValidator]:
    c = HttpMinerValidator(miner_key, timeout_s=5, pause_s=0.01)
    yield c
    c.close()


def test_signed_calls(standin: MinerApiStandin, client: HttpMinerValidator) -> None:
    standin.add_chute("c1", gpu_count=2, jobs=[{"ports": [{"port": 9000, "proto": "udp"}]}])
    chute = client.get_chute(standin.url, "c1", "1")
    assert chute is not None and chute.gpu_count == 2 and chute.jobs[0].ports[0].port == 9000
    assert client.get_chute(standin.url, "c1", "2") is None
    launch = client.launch_config(standin.url, "c1", "job-1")
    assert launch.token.startswith("jwt.") and launch.config_id
    assert standin.state.launches == [{"chute_id": "c1", "job_id": "job-1"}]
    client.delete_instance(standin.url, "c1", "i1")
    client.release_job(standin.url, "job-1")
    assert standin.state.deleted_instances == [("c1", "i1")]
    assert standin.state.released_jobs == ["job-1"]
    assert standin.state.bad_signatures == []


def test_refusals_and_retries(standin: MinerApiStandin, client: HttpMinerValidator) -> None:
    standin.state.launch_status = 423
    with pytest.raises(ValidatorError) as refused:
        client.launch_config(standin.url, "c1")
    assert refused.value.status == 423
    standin.state.launch_status = 200
    standin.state.fail_next = 2  # two 503s, then the answer
    assert client.launch_config(standin.url, "c1").config_id
    standin.state.fail_next = 5
    with pytest.raises(ValidatorError, match="503"):
        client.launch_config(standin.url, "c1")


def test_lists(standin: MinerApiStandin, client: HttpMinerValidator) -> None:
    standin.state.metrics = [
        {"chute_id": "a", "compute_multiplier": 2.5, "instance_count": 3},
        {"no_chute_id": True},
        {"chute_id": "b"},
    ]
    standin.state.utilization = [{"chute_id": "a", "scalable": False}, {"x": 1}]
    standin.state.rolling = [{"chute_id": "b"}]
    metrics = client.metrics(standin.url)
    assert [(m.chute_id, m.compute_multiplier, m.instance_count) for m in metrics] == [
        ("a", 2.5, 3),
        ("b", 1.0, 0),
    ]
    assert [(u.chute_id, u.scalable) for u in client.utilization(standin.url)] == [("a", False)]
    assert client.rolling_updates(standin.url) == {"b"}


def test_unsigned_client_is_refused(standin: MinerApiStandin) -> None:
    other = HttpMinerValidator(Keypair.create_from_mnemonic(Keypair.generate_mnemonic()), retries=1)
    try:
        with pytest.raises(ValidatorError, match="401"):
            other.launch_config(standin.url, "c1")
    finally:
        other.close()


def test_read_stream() -> None:
    lines = ["data: NO_ITEMS", "", 'data: {"chute_id": "a"}', "", "event: x", "data: [1]"]
    read = read_stream(iter(lines))
    assert read.items == [{"chute_id": "a"}, [1]] and read.no_items
    with pytest.raises(ValueError):
        read_stream(iter(["data: {cut"]))


def test_reconcile_lists(standin: MinerApiStandin, client: HttpMinerValidator) -> None:
    """`/miner/chutes/` (newest version of each chute) and `/miner/instances/` read whole."""
    assert client.instances(standin.url) == []  # NO_ITEMS
    standin.add_chute("c1", version="1")
    standin.add_chute("c1", version="2", gpu_count=2)
    standin.add_chute("c2")
    iid = standin.add_instance("c1", "cfg-1", active=True)
    chutes = client.chutes(standin.url)
    assert [(c.chute_id, c.version, c.gpu_count) for c in chutes] == [
        ("c1", "2", 2),
        ("c2", "1", 1),
    ]
    [inst] = client.instances(standin.url)
    assert (inst.instance_id, inst.chute_id, inst.config_id, inst.active, inst.verified) == (
        iid,
        "c1",
        "cfg-1",
        True,
        False,
    )
    assert standin.state.bad_signatures == []


@pytest.mark.parametrize("which", ["chutes", "instances"])
def test_partial_lists_raise(
    standin: MinerApiStandin, client: HttpMinerValidator, which: str
) -> None:
    """A list reconcile deletes by must be whole: a cut stream, a malformed item, a 5xx and
    (instances) silence instead of NO_ITEMS each raise, never a shorter list."""
    read = getattr(client, which)
    for n in range(3):
        standin.add_chute(f"c{n}")
        standin.add_instance(f"c{n}", f"cfg-{n}")
    assert len(read(standin.url)) == 3
    standin.state.cut_after = 2
    with pytest.raises(ValidatorError, match="interrupted"):
        read(standin.url)
    standin.state.cut_after = None
    standin.state.garbage_item = {"instance_id": "", "chute_id": None, "image": 5}
    with pytest.raises(ValidatorError, match="item 1 malformed"):
        read(standin.url)
    standin.state.garbage_item = None
    standin.state.fail_next = 1
    with pytest.raises(ValidatorError, match="503"):
        read(standin.url)
    assert len(read(standin.url)) == 3


def test_instances_silence_is_not_an_empty_list(
    standin: MinerApiStandin, client: HttpMinerValidator
) -> None:
    standin.state.no_items_marker = False
    with pytest.raises(ValidatorError, match="NO_ITEMS"):
        client.instances(standin.url)
