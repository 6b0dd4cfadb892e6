"""Catalog hygiene, plan building, input validation, selection and mirror_url."""

from __future__ import annotations

import datetime
import warnings
from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.module_utils import mirrors as m
from ansible_collections.chutes.miner.plugins.module_utils import mirrors_common, mirrors_files
from ansible_collections.chutes.miner.plugins.module_utils.mirrors_plan import (
    PlanRequest,
    build_plan,
)

from tests.mirrors.hosts import HOSTS

CHINA = ("tuna", "ustc", "aliyun", "huawei", "tencent", "auto")
HOST_NAMES = tuple(HOSTS)


def plan(
    catalog: dict[str, Any],
    defaults: dict[str, Any],
    profile: str,
    host: str | dict[str, Any] = "debian12",
    **kw: Any,
) -> dict[str, Any]:
    """The plan for one of HOSTS by name, or for a host's facts given as a dict."""
    built: dict[str, Any] = build_plan(
        PlanRequest(
            catalog["__mirrors_catalog"],
            profiles=catalog["__mirrors_profiles"],
            upstream=catalog["__mirrors_upstream"],
            defaults=defaults,
            profile=profile,
            host=HOSTS[host] if isinstance(host, str) else host,
            catalog_version=catalog["__mirrors_catalog_version"],
            blocked=catalog["__mirrors_blocked_hosts"],
            **kw,
        )
    )
    return built


def healthy(p: dict[str, Any], bad: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {
            "key": s["key"],
            "healthy": s["id"] not in bad,
            "status": "HTTP 200",
            "reason": "403",
            "latency_ms": 1,
        }
        for s in p["probes"]
    ]


def test_catalog_entries_are_complete(catalog: dict[str, Any]) -> None:
    ids = [e["id"] for e in catalog["__mirrors_catalog"]]
    assert len(ids) == len(set(ids)), "duplicate catalog ids"
    for entry in catalog["__mirrors_catalog"]:
        assert entry["resource"] in mirrors_common.RESOURCES, entry
        assert entry.get("last_verified"), f"{entry['id']} lacks last_verified"
        assert entry["confidence"] in ("documented", "observed", "unverified", "dead")
        when = datetime.date.fromisoformat(entry["last_verified"] + "-01")
        if (datetime.date.today() - when).days > 366:
            warnings.warn(
                f"{entry['id']} last verified {entry['last_verified']}: re-check it", stacklevel=1
            )


def test_profiles_reference_live_ids_of_the_right_resource(catalog: dict[str, Any]) -> None:
    by_id = {e["id"]: e for e in catalog["__mirrors_catalog"]}
    for name, profile in catalog["__mirrors_profiles"].items():
        resources = (
            profile.items()
            if name != "auto_vendor"
            else [kv for v in profile.values() for kv in v.items()]
        )
        for resource, ids in resources:
            for cid in ids:
                assert cid in by_id, f"{name}.{resource}: unknown id {cid}"
                assert by_id[cid]["confidence"] != "dead", f"{name}.{resource}: dead id {cid}"
                assert by_id[cid]["resource"] == resource, (
                    f"{name}.{resource}: {cid} is {by_id[cid]['resource']}"
                )


@pytest.mark.parametrize("host", HOST_NAMES)
@pytest.mark.parametrize("profile", CHINA)
def test_every_china_profile_plans_every_resource(
    catalog: dict[str, Any], resource_defaults: dict[str, Any], profile: str, host: str
) -> None:
    p = plan(catalog, resource_defaults, profile, host)
    assert p["errors"] == []
    kinds = {s["kind"] for s in p["probes"]}
    assert kinds == {"apt", "pypi", "registry", "file", "k8s_release", "hf", "ntp", "dns"}
    registries = p["resources"]["registries"]["groups"]
    assert {"docker.io", "registry.k8s.io", "gcr.io", "ghcr.io", "quay.io", "nvcr.io"} <= set(
        registries
    )
    assert registries["registry.k8s.io"][-1]["override_path"] is True  # aliyun flat names last
    dns = [c["url"] for c in p["resources"]["dns"]["groups"]["dns"]]
    assert not {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1"} & set(dns)


def test_apt_paths_follow_the_distribution(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    urls = {
        h: plan(catalog, resource_defaults, "tuna", h)["resources"]["apt"]["groups"]["apt"][0]
        for h in HOST_NAMES
    }
    assert urls["debian12"]["url"].endswith("/debian/")
    assert urls["debian12"]["security_url"].endswith("/debian-security/")
    assert urls["ubuntu2204"]["url"].endswith("/ubuntu/")
    assert urls["ubuntu2404_arm64"]["url"].endswith("/ubuntu-ports/")


def test_cuda_repo_path(catalog: dict[str, Any], resource_defaults: dict[str, Any]) -> None:
    defaults = {**resource_defaults, "cuda_apt": {**resource_defaults["cuda_apt"], "enabled": True}}
    p = plan(catalog, defaults, "tuna", "ubuntu2404")
    assert p["resources"]["cuda_apt"]["groups"]["cuda_apt"][0]["url"].endswith(
        "/repos/ubuntu2404/x86_64/"
    )
    p = plan(catalog, defaults, "tuna", "debian12")
    assert "/repos/debian12/x86_64/" in p["resources"]["cuda_apt"]["groups"]["cuda_apt"][0]["url"]


@pytest.mark.parametrize(
    ("host", "arch"),
    [("ubuntu2204", "amd64"), ("ubuntu2404", "amd64"), ("ubuntu2404_arm64", "arm64")],
)
def test_toolkit_repo_is_off_by_default_and_uses_debian_arch(
    catalog: dict[str, Any], resource_defaults: dict[str, Any], host: str, arch: str
) -> None:
    p = plan(catalog, resource_defaults, "tuna", host)
    assert not p["resources"]["nct_apt"]["enabled"]
    assert "flat_apt" not in {s["kind"] for s in p["probes"]}
    defaults = {**resource_defaults, "nct_apt": {**resource_defaults["nct_apt"], "enabled": True}}
    p = plan(catalog, defaults, "tuna", host)
    (cand,) = p["resources"]["nct_apt"]["groups"]["nct_apt"]
    assert cand["url"] == f"https://mirrors.ustc.edu.cn/libnvidia-container/stable/deb/{arch}/"
    sel = m.select(p, healthy(p))
    files = {f["dest"]: f for f in mirrors_files.files_plan(p, sel)["write"]}
    src = files["/etc/apt/sources.list.d/nvidia-container-toolkit.sources"]
    assert src["uri"] == cand["url"] and src["keyring"].endswith("toolkit-keyring.asc")
    key = files["/usr/share/keyrings/nvidia-container-toolkit-keyring.asc"]
    assert key["fingerprint"] == "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    assert files["/etc/apt/preferences.d/60-mirrors-nvidia-container-toolkit"]["origin"] == (
        "mirrors.ustc.edu.cn"
    )
    assert m.effective(p, sel)["nct_repo"] == cand["url"]
    assert mirrors_files.files_plan(p, sel)["remove"] == []  # cuda_apt is off


@pytest.mark.parametrize(
    ("host", "leftover"),
    [
        ("ubuntu2204", "cuda-ubuntu2204-x86_64.list"),
        ("ubuntu2404_arm64", "cuda-ubuntu2404-sbsa.list"),
    ],
)
def test_cuda_keyring_list_is_set_aside_while_cuda_is_mirrored(
    catalog: dict[str, Any], resource_defaults: dict[str, Any], host: str, leftover: str
) -> None:
    path = "/etc/apt/sources.list.d/" + leftover
    defaults = {**resource_defaults, "cuda_apt": {**resource_defaults["cuda_apt"], "enabled": True}}
    p = plan(catalog, defaults, "tuna", host)
    files = mirrors_files.files_plan(p, m.select(p, healthy(p)))
    assert files["remove"] == [path]
    assert path not in [f["dest"] for f in files["write"]] and path not in files["restore"]
    p = plan(catalog, resource_defaults, "tuna", host)  # cuda_apt off again: the backup returns
    assert path in mirrors_files.files_plan(p, m.select(p, healthy(p)))["restore"]


@pytest.mark.parametrize(
    ("snap", "errors"),
    [
        ({"mode": "store"}, 0),
        ({"mode": "bundle"}, 0),
        ({"mode": "bundle", "bundle_url": "not a url"}, 1),
        ({"mode": "proxy"}, 1),
        ({"mode": "proxy", "proxy": "http://proxy.lan:3128"}, 0),
        ({"mode": "store_proxy", "store_url": "http://snaps.lan"}, 1),
        ({"mode": "store_proxy", "store_url": "http://snaps.lan", "store_id": "AbC123"}, 0),
        ({"mode": "snapcraft"}, 1),
    ],
)
def test_snap_modes_need_their_inputs(
    catalog: dict[str, Any], resource_defaults: dict[str, Any], snap: dict[str, Any], errors: int
) -> None:
    p = plan(catalog, resource_defaults, "tuna", overrides={"snap": snap})
    assert len(p["errors"]) == errors, p["errors"]
    for e in p["errors"]:
        assert e["en"].startswith("snap:") and e["zh"].startswith("snap：")


def test_snap_config_and_airgap_bundle(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    proxy = {"mode": "proxy", "proxy": "http://proxy.lan:3128"}
    p = plan(catalog, resource_defaults, "tuna", overrides={"snap": proxy})
    eff = m.effective(p, m.select(p, healthy(p)))
    assert eff["snap"]["config"] == {
        "system": {"proxy.http": proxy["proxy"], "proxy.https": proxy["proxy"]}
    }
    store = {"mode": "store_proxy", "store_url": "http://snaps.lan", "store_id": "AbC123"}
    p = plan(catalog, resource_defaults, "tuna", overrides={"snap": store})
    assert m.effective(p, m.select(p, healthy(p)))["snap"]["config"] == {
        "core": {"proxy.store": "AbC123"}
    }
    airgap = {"pypi": ["http://pypi.lan/simple/"]}
    p = plan(catalog, resource_defaults, "airgap", custom=airgap)
    assert [e["en"] for e in p["errors"]] == ["snap: mode bundle needs a valid bundle_url (got '')"]
    p = plan(
        catalog,
        resource_defaults,
        "airgap",
        custom=airgap,
        overrides={"snap": {"bundle_url": "http://art.lan/snaps/"}},
    )
    assert p["errors"] == []
    snap = m.effective(p, m.select(p, healthy(p)))["snap"]
    assert snap["bundle_url"] == "http://art.lan/snaps/" and snap["bundle_dir"].startswith(
        "/var/lib/"
    )


def test_none_probes_nothing(catalog: dict[str, Any], resource_defaults: dict[str, Any]) -> None:
    p = plan(catalog, resource_defaults, "none")
    assert p["errors"] == [] and p["probes"] == []
    eff = m.effective(p, m.select(p, []))
    assert eff["apt"]["base"] == HOSTS["debian12"]["apt_origin"]["base"]
    assert eff["registries"] == {} and eff["ntp"] == [] and eff["workload_env"] == {}
    assert eff["workload_env_file"] == "" and eff["workload_configmap"] == "mirror-env"
    assert eff["snap"] == {} and eff["nct_repo"] == ""
    files = mirrors_files.files_plan(p, m.select(p, []))
    assert files["write"] == [] and mirrors_files.FACT_PATH in files["restore"]
    for path in (
        mirrors_common.WORKLOAD_ENV_FILE,
        "/etc/apt/sources.list.d/nvidia-container-toolkit.sources",
        "/usr/share/keyrings/cuda-archive-keyring.asc",
        "/usr/share/keyrings/nvidia-container-toolkit-keyring.asc",
        "/etc/apt/preferences.d/60-mirrors-nvidia-container-toolkit",
    ):
        assert path in files["restore"], path


def test_auto_prefers_host_origin_and_cloud_vpc(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    host = {**HOSTS["debian12"], "system_vendor": "Alibaba Cloud"}
    p = plan(catalog, resource_defaults, "auto", host=host)
    ids = [c["id"] for c in p["resources"]["apt"]["groups"]["apt"]]
    assert ids[:2] == ["apt_origin", "apt_aliyun_vpc"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"profile": "tsinghua"}, "mirrors_profile 'tsinghua'"),
        ({"profile": "custom", "custom": {"apt": ["ftp://x/"]}}, "malformed candidate"),
        ({"profile": "custom", "custom": {"pypi": ["http://"]}}, "malformed candidate"),
        ({"profile": "custom", "custom": {"dns": ["dns.example"]}}, "expected an IP address"),
        (
            {"profile": "custom", "custom": {"registries": {"bad host!": ["http://x"]}}},
            "malformed registry name",
        ),
        ({"profile": "tuna", "overrides": {"apt_mirror": {}}}, "unknown resource 'apt_mirror'"),
        (
            {"profile": "tuna", "overrides": {"pypi": {"candidates": ["no_such_id"]}}},
            "unknown catalog id",
        ),
        ({"profile": "custom"}, "needs mirrors_custom_profile"),
        ({"profile": "tuna", "on_failure": "ignore"}, "mirrors_on_failure"),
    ],
)
def test_invalid_inputs_give_one_bilingual_error(
    catalog: dict[str, Any], resource_defaults: dict[str, Any], kwargs: dict[str, Any], needle: str
) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by every run in this process
    profile = kwargs.pop("profile")
    p = plan(catalog, resource_defaults, profile, **kwargs)
    assert p["errors"], "expected an error"
    assert any(needle in e["en"] for e in p["errors"]), p["errors"]
    assert all(e["zh"] and any("\u4e00" <= ch <= "\u9fff" for ch in e["zh"]) for e in p["errors"])


def test_selection_is_first_healthy_and_keeps_all_healthy_registries(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    p = plan(catalog, resource_defaults, "tuna")
    sel = m.select(p, healthy(p, bad=("apt_tuna", "reg_docker_daocloud")))
    assert [c["id"] for c in sel["chosen"]["apt"]] == ["apt_ustc"]
    assert [c["id"] for c in sel["chosen"]["docker.io"]] == ["reg_docker_1ms"]
    assert [c["id"] for c in sel["chosen"]["registry.k8s.io"]] == [
        "reg_k8s_daocloud",
        "reg_k8s_nju",
        "reg_k8s_aliyun",
    ]
    assert sel["failed"] == {}
    row = next(r for r in sel["rows"] if r["candidate"].startswith("https://docker.m.daocloud.io"))
    assert not row["chosen"] and "allowlist" in row["hint"]["en"] and "白名单" in row["hint"]["zh"]
    assert "docker.m.daocloud.io" in sel["table"]


def test_selection_is_deterministic(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    p1 = plan(catalog, resource_defaults, "aliyun")
    p2 = plan(catalog, resource_defaults, "aliyun")
    assert p1["hash"] == p2["hash"]
    assert (
        m.select(p1, healthy(p1))["chosen"] == m.select(p2, list(reversed(healthy(p2))))["chosen"]
    )
    assert plan(catalog, resource_defaults, "tuna")["hash"] != p1["hash"]


def test_failure_modes(catalog: dict[str, Any], resource_defaults: dict[str, Any]) -> None:
    p = plan(catalog, resource_defaults, "tuna")
    bad = ("pypi_tuna", "pypi_aliyun")
    for mode in ("fail", "warn", "upstream"):
        sel = m.select(p, healthy(p, bad=bad), mode)
        assert sel["failed"] == {"pypi": mode}
        files = mirrors_files.files_plan(p, sel)
        written = [f["dest"] for f in files["write"]]
        assert "/etc/pip.conf" not in written
        assert ("/etc/pip.conf" in files["restore"]) == (mode != "warn")


def test_effective_exports_every_key(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    p = plan(catalog, resource_defaults, "tuna", "ubuntu2404")
    eff = m.effective(p, m.select(p, healthy(p)))
    for key in (
        "apt",
        "cuda_repo",
        "pypi_index",
        "registries",
        "files_prefix",
        "hf_endpoint",
        "ntp",
        "dns",
        "workload_env",
        "workload_env_file",
        "workload_configmap",
        "nct_repo",
        "snap",
        "k8s_binaries",
        "k8s_binaries_upstream",
    ):
        assert key in eff
    assert eff["k8s_binaries"] == "https://files.m.daocloud.io/dl.k8s.io/release"
    assert eff["k8s_binaries_upstream"] == "https://dl.k8s.io/release"
    env = eff["workload_env"]
    assert env["PIP_INDEX_URL"] == eff["pypi_index"] == env["UV_DEFAULT_INDEX"]
    assert env["HF_ENDPOINT"] == "https://hf-mirror.com" and env["HF_HUB_DISABLE_XET"] == "1"
    assert eff["workload_env_file"] == mirrors_common.WORKLOAD_ENV_FILE
    assert eff["snap"]["mode"] == "bundle" and eff["snap"]["config"] == {}
    written = [f["dest"] for f in mirrors_files.files_plan(p, m.select(p, healthy(p)))["write"]]
    assert mirrors_common.WORKLOAD_ENV_FILE in written
    assert eff["apt"]["security"] == eff["apt"]["base"]  # Ubuntu: same archive
    p = plan(
        catalog,
        {**resource_defaults, "apt": {**resource_defaults["apt"], "security": "upstream"}},
        "tuna",
        "ubuntu2404",
    )
    assert (
        m.effective(p, m.select(p, healthy(p)))["apt"]["security"]
        == catalog["__mirrors_upstream"]["apt_ubuntu_security"]
    )


@pytest.mark.parametrize(
    ("url", "eff", "want"),
    [
        (
            "https://github.com/a/b/releases/download/v1/x.tgz",
            {"profile": "tuna", "files_prefix": "https://files.m.daocloud.io"},
            "https://files.m.daocloud.io/github.com/a/b/releases/download/v1/x.tgz",
        ),
        (
            "https://get.helm.sh/helm-v3.16.0-linux-amd64.tar.gz",
            {
                "profile": "custom",
                "files_prefix": "http://lab:8200/",
                "artifact_server": "http://art.lab",
            },
            "http://art.lab/get.helm.sh/helm-v3.16.0-linux-amd64.tar.gz",
        ),
        (
            "https://raw.githubusercontent.com/o/r/v1/f.yaml?x=1",
            {"profile": "tuna", "files_prefix": "https://files.m.daocloud.io"},
            "https://files.m.daocloud.io/raw.githubusercontent.com/o/r/v1/f.yaml?x=1",
        ),
        (
            "https://github.com/a/b",
            {"profile": "none", "files_prefix": ""},
            "https://github.com/a/b",
        ),
        ("https://github.com/a/b", {}, "https://github.com/a/b"),
        ("https://github.com/a/b", None, "https://github.com/a/b"),
        # Kubernetes release binaries: onto the k8s_binaries tree when one was chosen ...
        (
            "https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet",
            {
                "profile": "custom",
                "files_prefix": "http://lab:8082/files",
                "k8s_binaries": "http://lab:8082/kubernetes/",
                "k8s_binaries_upstream": "https://dl.k8s.io/release",
            },
            "http://lab:8082/kubernetes/v1.34.4/bin/linux/amd64/kubelet",
        ),
        # ... else through the files prefix like any other host ...
        (
            "https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet.sha256",
            {
                "profile": "tuna",
                "files_prefix": "https://files.m.daocloud.io",
                "k8s_binaries": "",
                "k8s_binaries_upstream": "https://dl.k8s.io/release",
            },
            "https://files.m.daocloud.io/dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet.sha256",
        ),
        # ... and an offline directory is a prefix like any other.
        (
            "https://github.com/etcd-io/etcd/releases/download/v3.6.16/e.tar.gz",
            {"profile": "airgap", "files_prefix": "file:///srv/bundle/files"},
            "file:///srv/bundle/files/github.com/etcd-io/etcd/releases/download/v3.6.16/e.tar.gz",
        ),
        (
            "https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet",
            {
                "profile": "none",
                "k8s_binaries": "http://lab:8082/kubernetes",
                "k8s_binaries_upstream": "https://dl.k8s.io/release",
            },
            "https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet",
        ),
    ],
)
def test_mirror_url(url: str, eff: dict[str, Any] | None, want: str) -> None:
    assert m.mirror_url(url, eff) == want


def test_offline_directories_only_for_download_trees(
    catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    """files and k8s_binaries may name a directory on every host; other resources may not."""
    custom = {
        "files": ["file:///srv/bundle/files"],
        "k8s_binaries": ["file:///srv/bundle/kubernetes"],
    }
    no_snap = {**resource_defaults, "snap": {"enabled": False}}
    p = plan(catalog, no_snap, "airgap", custom=custom)
    assert p["errors"] == []
    kinds = {s["key"]: s["kind"] for s in p["probes"]}
    assert kinds == {
        "files/file:///srv/bundle/files": "file",
        "k8s_binaries/file:///srv/bundle/kubernetes": "k8s_release",
    }
    bad = plan(
        catalog,
        no_snap,
        "airgap",
        custom={"pypi": ["file:///srv/simple"], "k8s_binaries": ["file://host/srv/k"]},
    )
    assert [e["en"].split(":")[0] for e in bad["errors"]] == ["pypi", "k8s_binaries"]
    assert all(e["zh"] for e in bad["errors"])


def test_selection_rows_report_every_candidate() -> None:
    """The report rows of a hand-made plan, field by field: probed and not, healthy and not,
    chosen once for a single-choice resource, every healthy one for a registry group."""
    cands = [{"id": i, "url": f"http://{i}.example/"} for i in ("a", "b", "c", "d")]
    p = {
        "resources": {
            "apt": {"enabled": True, "groups": {"apt": cands}},
            "registries": {"enabled": True, "groups": {"docker.io": cands[:2]}},
            "pypi": {"enabled": True, "groups": {"pypi": cands[:1]}},
            "ntp": {"enabled": False, "groups": {"ntp": cands}},
        }
    }
    results = [
        {"key": "apt/a", "healthy": False, "status": "HTTP 403", "reason": "403", "latency_ms": 5},
        {"key": "apt/b", "healthy": True, "status": "HTTP 200", "latency_ms": 7, "warning": "slow"},
        {"key": "apt/c", "healthy": True, "status": "HTTP 200", "latency_ms": 3},
        {"key": "registries/docker.io/a", "healthy": True, "status": "HTTP 200"},
        {"key": "registries/docker.io/b", "healthy": True, "status": "HTTP 200"},
        {"key": "pypi/a", "healthy": False, "status": "timeout", "reason": "no-such-reason"},
    ]
    sel = m.select(p, results)
    assert {g: [c["id"] for c in picks] for g, picks in sel["chosen"].items()} == {
        "apt": ["b"],
        "docker.io": ["a", "b"],
    }
    assert sel["failed"] == {"pypi": "fail"}
    assert m.select(p, results, "warn")["failed"] == {"pypi": "warn"}
    no_hint = {"en": "", "zh": ""}
    assert sel["rows"] == [
        {"key": "apt/a", "resource": "apt", "candidate": "http://a.example/", "healthy": False,
         "chosen": False, "status": "HTTP 403", "latency_ms": 5, "hint": m.hint("403"),
         "warning": ""},
        {"key": "apt/b", "resource": "apt", "candidate": "http://b.example/", "healthy": True,
         "chosen": True, "status": "HTTP 200", "latency_ms": 7, "hint": no_hint,
         "warning": "slow"},
        {"key": "apt/c", "resource": "apt", "candidate": "http://c.example/", "healthy": True,
         "chosen": False, "status": "HTTP 200", "latency_ms": 3, "hint": no_hint,
         "warning": ""},
        {"key": "apt/d", "resource": "apt", "candidate": "http://d.example/", "healthy": False,
         "chosen": False, "status": "not probed (recorded choice kept)", "latency_ms": None,
         "hint": no_hint, "warning": ""},
        {"key": "registries/docker.io/a", "resource": "registries:docker.io",
         "candidate": "http://a.example/", "healthy": True, "chosen": True, "status": "HTTP 200",
         "latency_ms": None, "hint": no_hint, "warning": ""},
        {"key": "registries/docker.io/b", "resource": "registries:docker.io",
         "candidate": "http://b.example/", "healthy": True, "chosen": True, "status": "HTTP 200",
         "latency_ms": None, "hint": no_hint, "warning": ""},
        {"key": "pypi/a", "resource": "pypi", "candidate": "http://a.example/", "healthy": False,
         "chosen": False, "status": "timeout", "latency_ms": None, "hint": no_hint,
         "warning": ""},
    ]  # fmt: skip
    assert m.hint("403")["en"].startswith("forbidden") and "白名单" in m.hint("403")["zh"]
    assert m.select({}, []) == {"chosen": {}, "failed": {}, "rows": [], "table": m.table([])}
