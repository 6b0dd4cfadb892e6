# Copyright: chutes.miner developers
# MIT License
"""The choice of the ``chutes.miner.mirrors`` role: from the probe results, the mirror each
resource uses (``select``), the report table, the settings other roles read (``effective``) and
the URL rewriting every download goes through (``mirror_url``).

No Ansible imports and no network. The plan is built in mirrors_plan, the files in
mirrors_files, the key checks in pgp.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ansible_collections.chutes.miner.plugins.module_utils.mirrors_common import (
    MULTI,
    WORKLOAD_CONFIGMAP,
    WORKLOAD_ENV_FILE,
    host_paths,
    snap_config,
)

_HINTS = {
    "403": (
        "forbidden: not on the mirror's allowlist, or geo-blocked; add another mirror or sideload",
        "403 禁止访问：不在该镜像站的白名单内，或有地域限制；请添加其他镜像站或离线导入",
    ),
    "404": ("not found on this mirror", "该镜像站上不存在此内容"),
    "429": ("rate limited; retry later or add a mirror", "请求被限流；稍后重试或添加镜像站"),
    "timeout": ("no answer within the probe timeout", "探测超时，无响应"),
    "unreachable": ("connection failed (DNS, route or refused)", "无法连接（DNS、路由或被拒绝）"),
    "stale": ("index is older than allowed (mirror lags)", "索引过旧（镜像站同步滞后）"),
    "content": ("answered, but not with the expected content", "有响应，但内容不符合预期"),
    "checksum": ("artifact sha256 does not match", "文件 sha256 校验不一致"),
    "redirect": ("redirects to a blocked host", "重定向到被屏蔽的上游主机"),
}


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
