# Copyright: chutes.miner developers
# MIT License
"""Pure logic of the ``chutes.miner.mirrors`` role: plan, selection, URL rewriting.

No Ansible imports: the filter plugins, the benchmark and the unit tests all use
these functions directly. Nothing here talks to the network (see mirror_probe).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

PROFILES = ("none", "auto", "tuna", "ustc", "aliyun", "huawei", "tencent", "custom", "airgap")
RESOURCES = (
    "apt",
    "cuda_apt",
    "nct_apt",
    "pypi",
    "registries",
    "files",
    "k8s_binaries",
    "huggingface",
    "ntp",
    "dns",
    "snap",
)
SNAP_MODES = ("bundle", "proxy", "store_proxy", "store")
# Flat NVIDIA apt repos: resource -> (sources file, keyring installed for Signed-By).
FLAT_APT = {
    "cuda_apt": ("cuda", "/usr/share/keyrings/cuda-archive-keyring.asc"),
    "nct_apt": (
        "nvidia-container-toolkit",
        "/usr/share/keyrings/nvidia-container-toolkit-keyring.asc",
    ),
}
WORKLOAD_ENV_FILE = "/etc/chutes-miner/mirrors.env"
WORKLOAD_CONFIGMAP = "mirror-env"
ON_FAILURE = ("fail", "warn", "upstream")
RESTORE_MODES = ("backup", "canonical")
# Resources whose candidates may also be a directory on every host (file:///abs/path): the
# offline copy of a download tree for airgapped clusters.
FILE_SOURCES = ("files", "k8s_binaries")
# Resources whose every healthy candidate is kept, in order (the others keep the first).
MULTI = ("registries", "ntp", "dns")
MARKER = "managed-by: chutes.miner.mirrors"
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+(:\d{1,5})?$"
)
_HINTS = {
    "403": (
        "forbidden: not on the mirror's allowlist, or geo-blocked; add another mirror or sideload",
        "403 禁止访问：镜像不在白名单内或地域限制；请添加其他镜像或离线导入",
    ),
    "404": ("not found on this mirror", "该镜像站上不存在此内容"),
    "429": ("rate limited; retry later or add a mirror", "请求被限流；稍后重试或添加镜像"),
    "timeout": ("no answer within the probe timeout", "探测超时，无响应"),
    "unreachable": ("connection failed (DNS, route or refused)", "无法连接（DNS、路由或被拒绝）"),
    "stale": ("index is older than allowed (mirror lags)", "索引过旧（镜像同步滞后）"),
    "content": ("answered, but not with the expected content", "有响应，但内容不符合预期"),
    "checksum": ("artifact sha256 does not match", "文件 sha256 校验不一致"),
    "redirect": ("redirects to a blocked host", "重定向到被屏蔽的上游主机"),
}


def _err(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


def valid_url(url: Any) -> bool:
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and _valid_port(parts)


def valid_file_url(url: Any) -> bool:
    """``file:///abs/dir``: a directory that exists on every host (no host part)."""
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme == "file" and not parts.netloc and parts.path.startswith("/")


def _valid_port(parts: Any) -> bool:
    try:
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        return False
    return True


def valid_host(value: Any) -> bool:
    return isinstance(value, str) and bool(_HOST_RE.match(value))


def valid_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def host_paths(host: dict[str, Any]) -> dict[str, str]:
    """Distribution-dependent path pieces for catalog URL templates."""
    dist = str(host.get("distribution", "Debian"))
    arm = str(host.get("arch", "x86_64")) in ("aarch64", "arm64")
    version = str(host.get("version", "12"))
    if dist == "Ubuntu":
        apt_dir = "ubuntu-ports" if arm else "ubuntu"
        cuda = "ubuntu" + version.replace(".", "")
    else:
        apt_dir = "debian"
        cuda = "debian" + version.split(".", maxsplit=1)[0]
    return {
        "apt_dir": apt_dir,
        "distro": cuda,
        "arch": "sbsa" if arm else "x86_64",
        "deb_arch": "arm64" if arm else "amd64",
    }


def _normalise(resource: str, item: Any, catalog: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A candidate from a catalog id, a URL string or a dict, as a dict with id and url."""
    if isinstance(item, str) and item in catalog:
        entry = dict(catalog[item])
        entry.setdefault("source", "catalog")
        return entry
    if isinstance(item, str):
        return {"id": item, "url": item, "source": "operator"}
    if isinstance(item, dict):
        cand = dict(item)
        cand.setdefault("id", str(cand.get("url", "")))
        cand.setdefault("source", "operator")
        return cand
    return {"id": repr(item), "url": item, "source": "operator"}


def _check_candidate(resource: str, cand: dict[str, Any]) -> list[dict[str, str]]:
    url = cand.get("url")
    bad = (
        not valid_ip(url)
        if resource == "dns"
        else not (valid_host(url) or valid_ip(url))
        if resource == "ntp"
        else not (valid_url(url) or valid_file_url(url))
        if resource in FILE_SOURCES
        else not valid_url(url)
    )
    errors = []
    if bad:
        errors.append(
            _err(
                f"{resource}: malformed candidate {url!r} (expected "
                + (
                    "an IP address"
                    if resource == "dns"
                    else "a host name"
                    if resource == "ntp"
                    else "an http(s) URL or file:///absolute/dir"
                    if resource in FILE_SOURCES
                    else "an http(s) URL"
                )
                + ")",
                f"{resource}：候选地址 {url!r} 格式错误",
            )
        )
    if cand.get("security_url") and not valid_url(cand["security_url"]):
        errors.append(
            _err(
                f"{resource}: malformed security_url {cand['security_url']!r}",
                f"{resource}：security_url 格式错误",
            )
        )
    return errors


def _check_snap(settings: dict[str, Any], enabled: bool, profile: str) -> list[dict[str, str]]:
    """Snap settings: a known mode and the inputs that mode needs (docs/mirrors.md §3.8)."""
    if not enabled:
        return []
    mode = settings.get("mode", "bundle")
    if mode not in SNAP_MODES:
        return [
            _err(
                f"snap: mode {mode!r} is not one of {', '.join(SNAP_MODES)}",
                f"snap：mode {mode!r} 无效，可选值：{', '.join(SNAP_MODES)}",
            )
        ]
    errors = []
    need: list[tuple[str, Any]] = []
    if mode == "proxy":
        need = [("proxy", valid_url)]
    elif mode == "store_proxy":
        need = [("store_url", valid_url), ("store_id", _valid_store_id)]
    elif mode == "bundle" and (profile == "airgap" or settings.get("bundle_url")):
        need = [("bundle_url", valid_url)]  # airgap: the offline bundle is the only way
    for key, check in need:
        if not check(settings.get(key)):
            errors.append(
                _err(
                    f"snap: mode {mode} needs a valid {key} (got {settings.get(key)!r})",
                    f"snap：mode {mode} 需要有效的 {key}",
                )
            )
    return errors


def _valid_store_id(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[A-Za-z0-9]{1,64}", value))


def snap_config(settings: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``snap set`` options a snap mode needs: {snap: {option: value}} (empty for bundle/store)."""
    mode = settings.get("mode", "bundle")
    if mode == "proxy":
        proxy = str(settings.get("proxy", ""))
        return {"system": {"proxy.http": proxy, "proxy.https": proxy}}
    if mode == "store_proxy":
        return {"core": {"proxy.store": str(settings.get("store_id", ""))}}
    return {}


def _expand_apt(cand: dict[str, Any], paths: dict[str, str], dist: str) -> dict[str, Any]:
    if cand.get("source") != "catalog":
        cand.setdefault("security_url", cand["url"] if dist == "Ubuntu" else "")
        return cand
    root = str(cand["url"])
    cand["url"] = f"{root}{paths['apt_dir']}/"
    cand["security_url"] = cand["url"] if dist == "Ubuntu" else f"{root}debian-security/"
    return cand


def build_plan(
    catalog: list[dict[str, Any]],
    profiles: dict[str, Any],
    upstream: dict[str, Any],
    defaults: dict[str, Any],
    *,
    profile: str,
    overrides: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    host: dict[str, Any] | None = None,
    on_failure: str = "fail",
    restore_mode: str = "backup",
    catalog_version: str = "",
    require_digests: bool = False,
    blocked: list[str] | None = None,
) -> dict[str, Any]:
    """Resolve profile + overrides into per-resource settings, candidates and probes."""
    overrides = overrides or {}
    custom = custom or {}
    host = host or {}
    errors: list[dict[str, str]] = []
    if profile not in PROFILES:
        errors.append(
            _err(
                f"mirrors_profile {profile!r} is not one of {', '.join(PROFILES)}",
                f"mirrors_profile {profile!r} 无效，可选值：{', '.join(PROFILES)}",
            )
        )
    if on_failure not in ON_FAILURE:
        errors.append(
            _err(
                f"mirrors_on_failure {on_failure!r} is not one of {', '.join(ON_FAILURE)}",
                "mirrors_on_failure 取值无效",
            )
        )
    if restore_mode not in RESTORE_MODES:
        errors.append(
            _err(
                f"mirrors_restore_mode {restore_mode!r} is not one of {', '.join(RESTORE_MODES)}",
                "mirrors_restore_mode 取值无效",
            )
        )
    for name, data in (("mirrors_overrides", overrides), ("mirrors_custom_profile", custom)):
        if not isinstance(data, dict):
            errors.append(_err(f"{name} must be a mapping", f"{name} 必须是字典"))
            continue
        for key in sorted(set(data) - set(RESOURCES)):
            errors.append(
                _err(
                    f"{name}: unknown resource {key!r} (known: {', '.join(RESOURCES)})",
                    f"{name}：未知资源 {key!r}（可用：{', '.join(RESOURCES)}）",
                )
            )
    if profile in ("custom", "airgap") and not custom:
        errors.append(
            _err(
                f"mirrors_profile {profile} needs mirrors_custom_profile",
                f"mirrors_profile {profile} 需要设置 mirrors_custom_profile",
            )
        )
    if errors:
        return {"profile": profile, "errors": errors, "resources": {}, "probes": [], "hash": ""}

    by_id = {str(e["id"]): e for e in catalog}
    paths = host_paths(host)
    dist = str(host.get("distribution", "Debian"))
    profile_ids: dict[str, Any] = {}
    if profile in profiles:
        profile_ids = {k: list(v) for k, v in profiles[profile].items()}
    if profile == "auto":
        vendor = profiles.get("auto_vendor", {}).get(str(host.get("system_vendor", "")), {})
        for res, ids in vendor.items():
            profile_ids[res] = list(ids) + profile_ids.get(res, [])
    if profile in ("custom", "airgap"):
        profile_ids = {}
        for res, items in custom.items():
            profile_ids[res] = items

    resources: dict[str, Any] = {}
    probes: list[dict[str, Any]] = []
    for res in RESOURCES:
        settings = _merge(
            defaults.get(res, {}),
            overrides.get(res, {}) if isinstance(overrides.get(res), dict) else {},
        )
        raw = settings.pop("candidates", None)
        if raw is None:
            raw = profile_ids.get(res, [])
        enabled = bool(settings.get("enabled", True)) and profile != "none"
        if res == "snap":
            errors.extend(_check_snap(settings, enabled, profile))
            resources[res] = {"enabled": enabled, "settings": settings, "groups": {}}
            continue
        if res == "registries":
            groups = _registry_groups(raw, by_id, errors)
            extra = settings.get("extra", {}) or {}
            for up, hosts in sorted(extra.items()):
                groups[up] = [_normalise(res, h, by_id) for h in hosts]
            if profile in ("auto",) and not groups:
                groups = {}
        else:
            cands = []
            for item in raw if isinstance(raw, list) else [raw]:
                if (
                    isinstance(item, str)
                    and "://" not in item
                    and item not in by_id
                    and res not in ("ntp", "dns")
                ):
                    errors.append(
                        _err(
                            f"{res}: unknown catalog id {item!r}",
                            f"{res}：目录中不存在 id {item!r}",
                        )
                    )
                    continue
                cand = _normalise(res, item, by_id)
                if cand.get("resource") not in (None, res):
                    errors.append(
                        _err(
                            f"{res}: catalog id {item!r} belongs to {cand['resource']}",
                            f"{res}：id {item!r} 属于 {cand['resource']}",
                        )
                    )
                    continue
                cands.append(cand)
            if res == "apt":
                cands = [_expand_apt(c, paths, dist) for c in cands]
                origin = host.get("apt_origin") or {}
                if profile == "auto" and origin.get("base"):
                    cands.insert(
                        0,
                        {
                            "id": "apt_origin",
                            "url": origin["base"],
                            "security_url": origin.get("security", ""),
                            "source": "host",
                        },
                    )
            if res in FLAT_APT:
                # {arch}: CUDA's x86_64|sbsa, the toolkit repo's Debian amd64|arm64
                arch = paths["arch"] if res == "cuda_apt" else paths["deb_arch"]
                for c in cands:
                    c["url"] = str(c.get("url", "")).format(distro=paths["distro"], arch=arch)
            groups = {res: cands}
        for cands in groups.values():
            for cand in cands:
                errors.extend(_check_candidate(res, cand))
        if profile == "airgap" and enabled and not any(groups.values()):
            enabled = False
        resources[res] = {
            "enabled": enabled and any(groups.values()),
            "settings": settings,
            "groups": groups,
        }
        if not resources[res]["enabled"]:
            continue
        for group, cands in groups.items():
            for cand in cands:
                probe = _probe_spec(res, group, cand, settings, host)
                probe["blocked"] = sorted(set(probe["blocked"]) | set(blocked or []))
                probes.append(probe)

    for res in sorted(set(overrides) & set(RESOURCES)):
        if not isinstance(overrides[res], dict):
            errors.append(
                _err(
                    f"mirrors_overrides.{res} must be a mapping",
                    f"mirrors_overrides.{res} 必须是字典",
                )
            )
    digest = hashlib.sha256(
        json.dumps(
            {
                "profile": profile,
                "resources": resources,
                "catalog": catalog_version,
                "on_failure": on_failure,
                "require_digests": require_digests,
                "host": {k: host.get(k) for k in ("distribution", "version", "codename", "arch")},
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    return {
        "profile": profile,
        "errors": errors,
        "resources": resources,
        "probes": probes,
        "hash": digest,
        "upstream": upstream,
        "host": host,
        "on_failure": on_failure,
    }


def _merge(base: Any, over: Any) -> Any:
    """Dicts merge recursively, everything else (lists included) replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def _registry_groups(
    raw: Any, by_id: dict[str, dict[str, Any]], errors: list[dict[str, str]]
) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    if isinstance(raw, dict):
        for upstream_host, hosts in raw.items():
            if not valid_host(upstream_host):
                errors.append(
                    _err(
                        f"registries: malformed registry name {upstream_host!r}",
                        f"registries：仓库名 {upstream_host!r} 格式错误",
                    )
                )
                continue
            groups[str(upstream_host)] = [_normalise("registries", h, by_id) for h in (hosts or [])]
        return groups
    for item in raw or []:
        if item not in by_id:
            errors.append(
                _err(
                    f"registries: unknown catalog id {item!r}",
                    f"registries：目录中不存在 id {item!r}",
                )
            )
            continue
        entry = dict(by_id[item])
        entry["source"] = "catalog"
        groups.setdefault(str(entry["upstream"]), []).append(entry)
    return groups


def _probe_spec(
    res: str, group: str, cand: dict[str, Any], settings: dict[str, Any], host: dict[str, Any]
) -> dict[str, Any]:
    key = f"{res}/{cand['id']}" if res == group else f"{res}/{group}/{cand['id']}"
    spec: dict[str, Any] = {
        "key": key,
        "resource": res,
        "group": group,
        "id": cand["id"],
        "url": cand["url"],
        "blocked": list(settings.get("blocked_redirects", [])),
    }
    if res == "apt":
        spec.update(
            kind="apt",
            suite=str(host.get("codename", "bookworm")),
            max_age_hours=settings.get("max_age_hours", 48),
        )
    elif res in FLAT_APT:
        spec.update(kind="flat_apt", max_age_hours=settings.get("max_age_hours", 168))
    elif res == "pypi":
        spec.update(kind="pypi", package=settings.get("probe_package", "pip"))
    elif res == "registries":
        images = (settings.get("required_images") or {}).get(group, [])
        spec.update(
            kind="registry",
            override_path=bool(cand.get("override_path", False)),
            images=list(images),
        )
    elif res == "files":
        art = settings.get("probe_artifact") or {}
        spec.update(kind="file", path=art.get("path", ""), sha256=art.get("sha256", ""))
    elif res == "k8s_binaries":
        art = settings.get("probe_artifact") or {}
        spec.update(kind="k8s_release", path=art.get("path", ""))
    elif res == "huggingface":
        spec.update(kind="hf", path=settings.get("probe_path", "/"))
    elif res == "ntp":
        spec.update(kind="ntp")
    elif res == "dns":
        spec.update(kind="dns", name=settings.get("probe_name", "localhost"))
    return spec


def hint(status: str) -> dict[str, str]:
    en, zh = _HINTS.get(status, ("", ""))
    return {"en": en, "zh": zh}


def select(
    plan: dict[str, Any], results: list[dict[str, Any]], on_failure: str = "fail"
) -> dict[str, Any]:
    """Pick per group: first healthy candidate (all healthy for MULTI resources), in plan order."""
    by_key = {r["key"]: r for r in results}
    chosen: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for res, data in plan.get("resources", {}).items():
        if not data.get("enabled"):
            continue
        for group, cands in data["groups"].items():
            picks: list[dict[str, Any]] = []
            for cand in cands:
                key = f"{res}/{cand['id']}" if res == group else f"{res}/{group}/{cand['id']}"
                result = by_key.get(key)
                healthy = bool(result and result.get("healthy"))
                take = healthy and (res in MULTI or not picks)
                if take:
                    picks.append(cand)
                status = (
                    "not probed (recorded choice kept)"
                    if result is None
                    else result.get("status", "")
                )
                rows.append(
                    {
                        "key": key,
                        "resource": group if res == group else f"{res}:{group}",
                        "candidate": cand["url"],
                        "healthy": healthy,
                        "chosen": take,
                        "status": status,
                        "latency_ms": None if result is None else result.get("latency_ms"),
                        "hint": hint(str(result.get("reason", "")))
                        if result and not healthy
                        else {"en": "", "zh": ""},
                        "warning": "" if result is None else result.get("warning", ""),
                    }
                )
            if picks:
                chosen[group] = picks
            else:
                failed[group] = on_failure
    return {"chosen": chosen, "failed": failed, "rows": rows, "table": table(rows)}


def table(rows: list[dict[str, Any]]) -> str:
    """A plain-text report table (resource, candidate, result, latency, hint in EN and 中文)."""
    lines = [f"{'resource':<22} {'candidate':<48} {'result':<34} {'ms':>6}  hint / 提示"]
    for row in rows:
        mark = "*" if row["chosen"] else " "
        latency = "" if row["latency_ms"] is None else str(row["latency_ms"])
        text = row["hint"]["en"] and f"{row['hint']['en']} / {row['hint']['zh']}"
        if row.get("warning"):
            text = (text + " " if text else "") + f"warning: {row['warning']}"
        lines.append(
            f"{mark}{row['resource']:<21} {row['candidate']:<48} "
            f"{str(row['status'])[:34]:<34} {latency:>6}  {text}"
        )
    return "\n".join(lines)


def effective(plan: dict[str, Any], selection: dict[str, Any]) -> dict[str, Any]:
    """The exported ``mirrors_effective`` dict; empty values mean "upstream default"."""
    res = plan.get("resources", {})
    chosen = selection.get("chosen", {})
    up = plan.get("upstream", {})
    host = plan.get("host", {})
    paths = host_paths(host)

    def first(group: str) -> dict[str, Any]:
        picked: dict[str, Any] = chosen.get(group, [{}])[0]
        return picked

    apt_c = first("apt")
    apt_settings = res.get("apt", {}).get("settings", {})
    origin = host.get("apt_origin") or {}
    if host.get("distribution") == "Ubuntu":
        default_base = up.get(
            "apt_ubuntu_ports" if paths["apt_dir"] == "ubuntu-ports" else "apt_ubuntu", ""
        )
        default_sec = (
            default_base
            if paths["apt_dir"] == "ubuntu-ports"
            else up.get("apt_ubuntu_security", "")
        )
    else:
        default_base, default_sec = origin.get("base", ""), origin.get("security", "")
    apt_security = apt_c.get("security_url") or default_sec
    if apt_settings.get("security") == "upstream":
        apt_security = default_sec
    apt = {
        "managed": bool(apt_c),
        "base": apt_c.get("url", default_base),
        "security": apt_security if apt_c else default_sec,
    }
    pypi = first("pypi").get("url", "")
    hf = first("huggingface").get("url", "")
    files = first("files").get("url", "")
    k8s_binaries = str(first("k8s_binaries").get("url", "")).rstrip("/")
    files_settings = res.get("files", {}).get("settings", {})
    registries = {
        g: [c["url"] for c in chosen[g]]
        for g in sorted(res.get("registries", {}).get("groups", {}))
        if g in chosen
    }
    env: dict[str, str] = {}  # the workload environment (env file, mirror-env ConfigMap data)
    if pypi:
        env["PIP_INDEX_URL"] = pypi
        env["UV_DEFAULT_INDEX"] = pypi
        if pypi.startswith("http://"):
            env["PIP_TRUSTED_HOST"] = str(urlsplit(pypi).hostname)
    if hf:
        env["HF_ENDPOINT"] = hf
        if res.get("huggingface", {}).get("settings", {}).get("disable_xet", True):
            env["HF_HUB_DISABLE_XET"] = "1"
    dns_settings = res.get("dns", {}).get("settings", {})
    snap = res.get("snap", {})
    snap_settings = {k: v for k, v in snap.get("settings", {}).items() if k != "enabled"}
    return {
        "profile": plan.get("profile", "none"),
        "apt": apt,
        "cuda_repo": first("cuda_apt").get("url", ""),
        "nct_repo": first("nct_apt").get("url", ""),
        "pypi_index": pypi,
        "registries": registries,
        "registry_upstreams": {
            g: up.get("registries", {}).get(g, f"https://{g}") for g in registries
        },
        "files_prefix": files,
        "artifact_server": str(files_settings.get("artifact_server", "") or ""),
        "k8s_binaries": k8s_binaries,
        "k8s_binaries_upstream": str(up.get("k8s_binaries", "")).rstrip("/"),
        "hf_endpoint": hf,
        "ntp": [c["url"] for c in chosen.get("ntp", [])],
        "dns": [c["url"] for c in chosen.get("dns", [])],
        "dns_keep_link": bool(dns_settings.get("keep_link_dns", True)),
        "snap": dict(sorted({**snap_settings, "config": snap_config(snap_settings)}.items()))
        if snap.get("enabled")
        else {},
        "workload_env": env,
        "workload_env_file": WORKLOAD_ENV_FILE if env else "",
        "workload_configmap": WORKLOAD_CONFIGMAP,
        "failed": dict(sorted(selection.get("failed", {}).items())),
    }


FACT_PATH = "/etc/ansible/facts.d/chutes_mirrors.fact"
CERTS_DIRS = {
    "containerd": "/etc/containerd/certs.d",
    "microk8s": "/var/snap/microk8s/current/args/certs.d",
}


def _group_files(host: dict[str, Any], settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    dist = "ubuntu" if host.get("distribution") == "Ubuntu" else "debian"
    paths = host_paths(host)
    apt = [
        {
            "dest": f"/etc/apt/sources.list.d/{dist}.sources",
            "src": f"etc/apt/sources.list.d/{dist}.sources.j2",
            "apt": True,
        },
        {"dest": "/etc/apt/sources.list", "src": "etc/apt/sources.list.j2", "apt": True},
        {
            "dest": "/etc/apt/apt.conf.d/80-mirrors",
            "src": "etc/apt/apt.conf.d/80-mirrors.j2",
            "apt": False,
        },
    ]
    flat: dict[str, list[dict[str, Any]]] = {}
    for res, (name, keyring) in FLAT_APT.items():
        flat[res] = [
            {
                "dest": f"/etc/apt/sources.list.d/{name}.sources",
                "src": "etc/apt/sources.list.d/flat.sources.j2",
                "apt": True,
                "resource": res,
                "keyring": keyring,
            },
            {
                "dest": keyring,
                "src": "",
                "apt": False,
                "key": True,
                "resource": res,
                "key_file": str(settings.get(res, {}).get("key_file", "")),
                "fingerprint": "".join(
                    str(settings.get(res, {}).get("key_fingerprint", "")).split()
                ).upper(),
            },
        ]
    # NVIDIA's cuda-keyring package drops this .list (its host, another Signed-By for the same
    # repo): backed up and removed while the role writes cuda.sources (docs/mirrors.md §2.3).
    flat["cuda_apt"].append(
        {
            "dest": f"/etc/apt/sources.list.d/cuda-{paths['distro']}-{paths['arch']}.list",
            "src": "",
            "apt": False,
            "remove": True,
        }
    )
    # Both repos carry the toolkit packages: pin them to the toolkit repo (docs/mirrors.md §2.3).
    flat["nct_apt"].append(
        {
            "dest": "/etc/apt/preferences.d/60-mirrors-nvidia-container-toolkit",
            "src": "etc/apt/preferences.d/60-mirrors-nvidia-container-toolkit.j2",
            "apt": False,
        }
    )
    pypi = [{"dest": "/etc/pip.conf", "src": "etc/pip.conf.j2", "apt": False}]
    if settings.get("pypi", {}).get("uv", True):
        pypi.append({"dest": "/etc/uv/uv.toml", "src": "etc/uv/uv.toml.j2", "apt": False})
    env = [
        {
            "dest": "/etc/profile.d/60-mirrors.sh",
            "src": "etc/profile.d/60-mirrors.sh.j2",
            "apt": False,
        },
        {
            "dest": "/etc/environment.d/60-mirrors.conf",
            "src": "etc/environment.d/60-mirrors.conf.j2",
            "apt": False,
        },
        {"dest": WORKLOAD_ENV_FILE, "src": "etc/chutes-miner/mirrors.env.j2", "apt": False},
    ]
    return {"apt": apt, **flat, "pypi": pypi, "env": env}


def files_plan(
    plan: dict[str, Any], selection: dict[str, Any], microk8s: bool = False
) -> dict[str, Any]:
    """Which files to write (and from which template), which to restore, which to keep.

    Resources without a chosen mirror are restored (``none``, ``on_failure: upstream``)
    or left alone (``on_failure: warn``).
    """
    res = plan.get("resources", {})
    host = plan.get("host", {})
    settings = {k: v.get("settings", {}) for k, v in res.items()}
    chosen = selection.get("chosen", {})
    failed = selection.get("failed", {})
    groups = _group_files(host, settings)
    reg_settings = settings.get("registries", {})
    dirs = [
        CERTS_DIRS[r]
        for r in reg_settings.get("runtimes", ["containerd", "microk8s"])
        if r in CERTS_DIRS
    ]
    dirs = [d for d in dirs if d != CERTS_DIRS["microk8s"] or microk8s]
    write: list[dict[str, Any]] = []
    remove: list[str] = []
    restore: list[str] = []
    for group, files in groups.items():
        source = "pypi" if group == "env" else group
        if group == "env":
            active = bool(chosen.get("pypi") or chosen.get("huggingface"))
            kept = any(failed.get(g) == "warn" for g in ("pypi", "huggingface"))
        else:
            active = bool(chosen.get(group)) and bool(res.get(group, {}).get("enabled"))
            kept = failed.get(source) == "warn"
        if group in FLAT_APT and not settings.get(group, {}).get("write_sources", True):
            active = False
        if active:
            if group in FLAT_APT:  # the sources file and the apt pin name the chosen repo
                uri = str(chosen[group][0]["url"])
                files = [{**f, "uri": uri, "origin": urlsplit(uri).hostname or ""} for f in files]
            write.extend(f for f in files if not f.get("remove"))
            remove.extend(f["dest"] for f in files if f.get("remove"))
        elif not kept:
            restore.extend(f["dest"] for f in files)
    for registry in sorted(res.get("registries", {}).get("groups", {})):
        if registry in chosen and res["registries"].get("enabled"):
            for d in dirs:
                write.append(
                    {
                        "dest": f"{d}/{registry}/hosts.toml",
                        "src": "etc/containerd/certs.d/hosts.toml.j2",
                        "apt": False,
                        "registry": registry,
                    }
                )
    write.append(
        {"dest": FACT_PATH, "src": "etc/ansible/facts.d/chutes_mirrors.fact.j2", "apt": False}
    )
    all_paths = [
        f["dest"] for files in _group_files(host, {"pypi": {"uv": True}}).values() for f in files
    ]
    if plan.get("profile") == "none":
        write, remove, restore = [], [], all_paths + [FACT_PATH]
    keep = [f["dest"] for f in write]
    return {
        "write": write,
        "remove": remove,
        "restore": [p for p in dict.fromkeys(restore) if p not in keep],
        "globs": [f"{d}/*/hosts.toml" for d in CERTS_DIRS.values()],
        "keep": keep,
        # a change to one of these needs apt-get update: sources, keys, set-aside .list
        "apt_paths": [
            f["dest"]
            for g in ("apt", *FLAT_APT)
            for f in groups[g]
            if f["apt"] or f.get("key") or f.get("remove")
        ],
    }


def mirror_url(url: str, effective_: dict[str, Any] | None) -> str:
    """Route a download URL through the mirror of its kind.

    A Kubernetes release URL (under ``k8s_binaries_upstream``, the upstream release tree) goes
    to the ``k8s_binaries`` mirror when one was chosen: ``<base>/<path below release/>``.
    Everything else, and release URLs without that mirror, goes through the artifact server
    or the files prefix mirror: ``https://<host>/<path>`` becomes ``<prefix>/<host>/<path>``.
    With no mirror (profile ``none`` or an empty fact) the URL is unchanged.
    """
    if not effective_:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"mirror_url: not an http(s) URL: {url!r}")
    if effective_.get("profile") == "none":
        return url
    k8s_base = str(effective_.get("k8s_binaries") or "")
    k8s_upstream = str(effective_.get("k8s_binaries_upstream") or "").rstrip("/")
    if k8s_base and k8s_upstream and url.startswith(k8s_upstream + "/"):
        return k8s_base.rstrip("/") + url[len(k8s_upstream) :]
    prefix = str(effective_.get("artifact_server") or effective_.get("files_prefix") or "")
    if not prefix:
        return url
    rest = parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")
    return prefix.rstrip("/") + "/" + rest


_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S
)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _bit in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(text: str) -> bytes:
    """The binary key of one ASCII-armored OpenPGP public key block (RFC 4880 §6)."""
    match = _ARMOR.search(text)
    if not match:
        raise ValueError("not an ASCII-armored OpenPGP public key block")
    lines = [line.strip() for line in match.group(1).splitlines()]
    if "" in lines:  # armor headers (Version:, Comment:) end at the first blank line
        lines = lines[lines.index("") + 1 :]
    lines = [line for line in lines if line]
    checksum = lines.pop()[1:] if lines and lines[-1].startswith("=") else None
    data = base64.b64decode("".join(lines), validate=True)
    if checksum is not None and base64.b64decode(checksum) != _crc24(data).to_bytes(3, "big"):
        raise ValueError("armor checksum (CRC-24) does not match the key data")
    return data


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(data):
        head = data[i]
        i += 1
        if not head & 0x80:
            raise ValueError(f"not an OpenPGP packet at offset {i - 1}")
        if head & 0x40:  # new format
            tag, first = head & 0x3F, data[i]
            i += 1
            if first < 192:
                length = first
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i] + 192, i + 1
            elif first == 255:
                length, i = int.from_bytes(data[i : i + 4], "big"), i + 4
            else:
                raise ValueError("partial-length packets are not expected in a public key")
        else:  # old format
            tag, size = (head >> 2) & 0x0F, head & 0x03
            if size == 3:
                raise ValueError("indeterminate-length packets are not expected in a public key")
            width = (1, 2, 4)[size]
            length, i = int.from_bytes(data[i : i + width], "big"), i + width
        if i + length > len(data):
            raise ValueError("truncated OpenPGP packet")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def pgp_fingerprints(armored: str) -> list[str]:
    """Fingerprints of the primary keys (not subkeys) in an armored key file, in order.

    v4 fingerprint: SHA-1 over 0x99, the two-byte length and the public-key packet body
    (RFC 4880 §12.2). A pinned key file must yield exactly one, the pinned one.
    """
    prints = []
    for tag, body in _packets(dearmor(armored)):
        if tag == 6:
            if not body or body[0] != 4:
                raise ValueError("only version 4 OpenPGP keys are supported")
            digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)  # noqa: S324  # RFC 4880 fingerprint
            prints.append(digest.hexdigest().upper())
    return prints
