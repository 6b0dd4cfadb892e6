"""One set of real parts per pytest worker: dnsmasq as the cluster DNS, two
docker-registry instances behind two validator fronts (A over HTTPS with an intermediate CA, B
over plain HTTP), the control_api registry-auth listener as `python -m control_api
registry-auth` runs it, and nginx with the rendered template. parts.py describes each part."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bittensor_wallet import Keypair

from tests.ansible_env import REPO
from tests.registry_proxy.parts import (
    HOST_SUFFIX,
    Containerd,
    Daemon,
    Image,
    Pki,
    ValidatorFront,
    containerd,
    dns_server,
    docker_registry,
    free_port,
    push_image,
    render,
    require,
    running,
    serving,
)

DOMAIN = "chutes.test"  # names only the stand-in cluster DNS knows


def keypair() -> tuple[Keypair, str]:
    seed = secrets.token_hex(32)
    return Keypair.create_from_seed("0x" + seed), seed  # type: ignore[arg-type]  # hex str


@dataclass(frozen=True)
class Proxy:
    port: int
    config: Path
    daemon: Daemon

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class World:
    workdir: Path
    miner: Keypair
    validator_a: Keypair
    validator_b: Keypair
    unknown: Keypair  # a well-formed hotkey no entry lists
    misnamed: Keypair  # listed, but its registry name is not on the registry's certificate
    unresolvable: Keypair  # listed, but the cluster DNS does not know its registry's name
    front_a: ValidatorFront
    front_b: ValidatorFront
    authority_a: str
    authority_b: str
    registry_a: int
    registry_b: int
    image_a: Image
    image_b: Image
    variables: dict[str, Any]
    token: str

    def fronts_seen(self) -> int:
        return len(self.front_a.seen) + len(self.front_b.seen)

    @contextmanager
    def nginx(self, **overrides: Any) -> Iterator[Proxy]:
        """Another nginx from the template, with some inputs changed."""
        port = free_port()
        state = self.workdir / f"nginx-{port}"
        state.mkdir(mode=0o755)
        variables = {
            **self.variables,
            "miner_registry_proxy_port": port,
            "miner_registry_proxy_state_dir": str(state),
            **overrides,
        }
        config = state / "nginx.conf"
        config.write_text(render(variables))
        argv = [require("nginx"), "-c", str(config), "-e", "stderr", "-g", "daemon off;"]
        with running("nginx", argv, state / "log", port) as daemon:
            yield Proxy(port, config, daemon)

    def write_token_file(self, name: str, token: str) -> str:
        path = self.workdir / name
        path.write_text(f'proxy_set_header X-Registry-Auth-Token "{token}";\n')
        return str(path)


def listener_env(
    miner_ss58: str, seed: str, validators: list[Keypair], token: str, port: int
) -> dict[str, str]:
    supported = [
        {"hotkey": v.ss58_address, "registry": "r.example", "api": "https://a", "socket": "wss://s"}
        for v in validators
    ]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "MINER_SS58": miner_ss58,
        "MINER_SEED": seed,
        "VALIDATORS": json.dumps(
            {"defaultRegistry": "r.example", "defaultApi": "https://a", "supported": supported}
        ),
        # Required settings the listener never uses (it opens no database or Redis).
        "POSTGRESQL": "postgresql://unused@127.0.0.1:9/unused",
        "REDIS_URL": "redis://127.0.0.1:9",
        "REGISTRY_AUTH_TOKEN": token,
        "REGISTRY_AUTH_HOST": "127.0.0.1",
        "REGISTRY_AUTH_PORT": str(port),
        "METRICS_PORT": "0",
    }


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    workdir = Path(tempfile.mkdtemp(prefix="chutes-registry-proxy-"))
    workdir.chmod(0o755)  # nginx's workers run as nobody
    try:
        with ExitStack() as stack:
            yield _world(stack, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _world(stack: ExitStack, workdir: Path) -> World:
    miner, miner_seed = keypair()
    validator_a, validator_b, unknown, misnamed, unresolvable = (keypair()[0] for _ in range(5))
    resolver = stack.enter_context(dns_server(workdir, DOMAIN))
    registry_a = stack.enter_context(docker_registry(workdir, "registry-a"))
    registry_b = stack.enter_context(docker_registry(workdir, "registry-b"))
    image_a = push_image(registry_a, "chutes/demo", "1.0", "validator A")
    image_b = push_image(registry_b, "chutes/demo", "1.0", "validator B")
    pki = Pki.create(workdir, f"registry-a.{DOMAIN}")
    front_a = ValidatorFront(registry_a, miner.ss58_address)
    front_b = ValidatorFront(registry_b, miner.ss58_address)
    port_a = stack.enter_context(serving(front_a, pki.server_context))
    port_b = stack.enter_context(serving(front_b))

    token = secrets.token_urlsafe(24)
    auth_port = free_port()
    env = listener_env(miner.ss58_address, miner_seed, [validator_a, validator_b], token, auth_port)
    stack.enter_context(
        running(
            "registry-auth listener",
            [sys.executable, "-m", "control_api", "registry-auth"],
            workdir / "listener.log",
            auth_port,
            env,
        )
    )
    world = World(
        workdir=workdir,
        miner=miner,
        validator_a=validator_a,
        validator_b=validator_b,
        unknown=unknown,
        misnamed=misnamed,
        unresolvable=unresolvable,
        front_a=front_a,
        front_b=front_b,
        authority_a=f"registry-a.{DOMAIN}:{port_a}",
        authority_b=f"registry-b.{DOMAIN}:{port_b}",
        registry_a=registry_a,
        registry_b=registry_b,
        image_a=image_a,
        image_b=image_b,
        variables={},
        token=token,
    )
    world.variables = {
        "miner_registry_proxy_bind_address": "127.0.0.1",
        "miner_registry_proxy_validators": [
            # as the inventory lists validators: more keys than the proxy reads
            {
                "hotkey": validator_a.ss58_address,
                "registry": f"https://{world.authority_a}",
                "api": "https://api.example",
                "socket": "wss://ws.example",
            },
            {"hotkey": validator_b.ss58_address, "registry": f"HTTP://{world.authority_b}/"},
            {"hotkey": misnamed.ss58_address, "registry": f"other-name.{DOMAIN}:{port_a}"},
            {"hotkey": unresolvable.ss58_address, "registry": "registry.unknown.invalid"},
        ],
        "miner_registry_proxy_resolver": resolver,
        "miner_registry_proxy_auth_url": f"http://api-internal.{DOMAIN}:{auth_port}/registry/auth",
        "miner_registry_proxy_auth_token_file": world.write_token_file("token.conf", token),
        "miner_registry_proxy_ca_file": str(pki.root_pem_path),
    }
    return world


@pytest.fixture(scope="session")
def proxy(world: World) -> Iterator[Proxy]:
    """nginx from the template with the world's inputs."""
    with world.nginx() as started:
        yield started


@pytest.fixture(scope="module")
def node(world: World) -> Iterator[Containerd]:
    """containerd, as on a GPU node (its image resolver; no Kubernetes)."""
    with containerd(world.workdir) as started:
        yield started


def host(validator: Keypair, port: int | None = None) -> str:
    """The name containerd pulls from, with or without the port."""
    name = validator.ss58_address.lower() + HOST_SUFFIX
    return name if port is None else f"{name}:{port}"


def nginx_test(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("nginx"), "-t", "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
