"""containerd pulls chute images through the registry proxy, configured as the Kubernetes role
configures a node: its certs.d entry for `<hotkey>.localregistry.chutes.ai:<port>` (rendered
from the k8s_binaries role's template) and the name mapped to 127.0.0.1."""

from __future__ import annotations

import yaml

from tests.ansible_env import REPO
from tests.registry_proxy.conftest import Proxy, World, host
from tests.registry_proxy.parts import Containerd, render

K8S_ROLE = REPO / "collections/ansible_collections/chutes/miner/roles/k8s_binaries"


def certs_entry(node: Containerd, name: str) -> None:
    """The node's hosts.toml for one validator name, as the Kubernetes role writes it."""
    marker = yaml.safe_load((K8S_ROLE / "vars/main.yml").read_text())["__k8s_binaries_marker"]
    template = K8S_ROLE / "templates/etc/containerd/certs.d/localregistry.hosts.toml.j2"
    directory = node.certs_dir / name
    directory.mkdir(exist_ok=True)
    text = render({"item": name, "__k8s_binaries_marker": marker}, template)
    (directory / "hosts.toml").write_text(text)


def test_containerd_pulls_each_validators_image(
    world: World, proxy: Proxy, node: Containerd
) -> None:
    pulls = [
        (world.validator_a, world.front_a, world.image_a),
        (world.validator_b, world.front_b, world.image_b),
    ]
    for validator, front, image in pulls:
        name = host(validator, proxy.port)
        certs_entry(node, name)
        before = len(front.seen)
        ref = f"{name}/{image.name}:{image.tag}"
        result = node.pull(ref, [host(validator)])
        assert result.returncode == 0, result.stderr
        assert node.image_digest(ref) == image.digest
        seen = front.seen[before:]
        assert {s.path for s in seen} >= {
            f"/v2/{image.name}/manifests/{image.tag}",
            f"/v2/{image.name}/blobs/{image.layer_digest}",
        }
        assert all(s.verified and s.method in ("GET", "HEAD") for s in seen)


def test_containerd_pull_of_an_unknown_hotkey_fails(
    world: World, proxy: Proxy, node: Containerd
) -> None:
    name = host(world.unknown, proxy.port)
    certs_entry(node, name)
    before = world.fronts_seen()
    result = node.pull(f"{name}/chutes/demo:1.0", [host(world.unknown)])
    assert result.returncode != 0
    assert "421 Misdirected Request" in result.stderr
    assert world.fronts_seen() == before
