# Copyright: chutes.miner developers
# MIT License
"""The plan of the ``chutes.miner.mirrors`` role for one host: the profile and the operator's
overrides resolved against the mirror catalog into per-resource settings, candidates and the
probes that check them (``chutes.miner.mirror_probe`` runs them). Every input problem is
reported in English and Chinese; nothing here raises on bad input or talks to the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils.mirrors_common import (
    FILE_SOURCES,
    FLAT_APT,
    ON_FAILURE,
    PROFILES,
    RESOURCES,
    RESTORE_MODES,
    SNAP_MODES,
    err,
    host_paths,
    valid_file_url,
    valid_host,
    valid_ip,
    valid_url,
)


@dataclass(frozen=True)
class PlanRequest:
    """Everything one host's plan is built from.

    The first four come from the role's data files (the catalog and its profiles, the upstream
    defaults, the per-resource defaults); the rest are the operator's settings and the host's
    facts. ``overrides`` and ``custom`` are taken as given: a value that is not a mapping is
    reported as a problem, not raised.
    """

    catalog: list[dict[str, Any]]
    profiles: dict[str, Any]
    upstream: dict[str, Any]
    defaults: dict[str, Any]
    profile: str
    overrides: Any = None
    custom: Any = None
    host: Any = None
    on_failure: str = "fail"
    restore_mode: str = "backup"
    catalog_version: str = ""
    require_digests: bool = False
    blocked: Any = ()


def build_plan(req: PlanRequest) -> dict[str, Any]:
    """Resolve profile + overrides into per-resource settings, candidates and probes."""
    overrides = req.overrides or {}
    custom = req.custom or {}
    host = req.host or {}
    errors = _request_errors(req, overrides, custom)
    if errors:
        return {"profile": req.profile, "errors": errors, "resources": {}, "probes": [], "hash": ""}

    by_id = {str(e["id"]): e for e in req.catalog}
    profile_ids = _profile_ids(req.profile, req.profiles, custom, host)
    resources: dict[str, Any] = {}
    probes: list[dict[str, Any]] = []
    for res in RESOURCES:
        settings = _merge(
            req.defaults.get(res, {}),
            overrides.get(res, {}) if isinstance(overrides.get(res), dict) else {},
        )
        raw = settings.pop("candidates", None)
        if raw is None:
            raw = profile_ids.get(res, [])
        enabled = bool(settings.get("enabled", True)) and req.profile != "none"
        if res == "snap":
            errors.extend(_check_snap(settings, enabled, req.profile))
            resources[res] = {"enabled": enabled, "settings": settings, "groups": {}}
            continue
        groups = _groups(res, raw, settings, by_id, host, req.profile, errors)
        for cands in groups.values():
            for cand in cands:
                errors.extend(_check_candidate(res, cand))
        if req.profile == "airgap" and enabled and not any(groups.values()):
            enabled = False
        resources[res] = {
            "enabled": enabled and any(groups.values()),
            "settings": settings,
            "groups": groups,
        }
        if resources[res]["enabled"]:
            probes.extend(_probes(res, groups, settings, host, req.blocked))

    for res in sorted(set(overrides) & set(RESOURCES)):
        if not isinstance(overrides[res], dict):
            errors.append(
                err(
                    f"mirrors_overrides.{res} must be a mapping",
                    f"mirrors_overrides.{res} 必须是字典",
                )
            )
    return {
        "profile": req.profile,
        "errors": errors,
        "resources": resources,
        "probes": probes,
        "hash": _plan_hash(req, resources, host),
        "upstream": req.upstream,
        "host": host,
        "on_failure": req.on_failure,
    }


def _request_errors(req: PlanRequest, overrides: Any, custom: Any) -> list[dict[str, str]]:
    """Problems of the settings themselves, before any resource is resolved."""
    errors: list[dict[str, str]] = []
    if req.profile not in PROFILES:
        errors.append(
            err(
                f"mirrors_profile {req.profile!r} is not one of {', '.join(PROFILES)}",
                f"mirrors_profile {req.profile!r} 无效，可选值：{', '.join(PROFILES)}",
            )
        )
    if req.on_failure not in ON_FAILURE:
        errors.append(
            err(
                f"mirrors_on_failure {req.on_failure!r} is not one of {', '.join(ON_FAILURE)}",
                "mirrors_on_failure 取值无效",
            )
        )
    if req.restore_mode not in RESTORE_MODES:
        errors.append(
            err(
                f"mirrors_restore_mode {req.restore_mode!r} is not one of "
                f"{', '.join(RESTORE_MODES)}",
                "mirrors_restore_mode 取值无效",
            )
        )
    for name, data in (("mirrors_overrides", overrides), ("mirrors_custom_profile", custom)):
        if not isinstance(data, dict):
            errors.append(err(f"{name} must be a mapping", f"{name} 必须是字典"))
            continue
        for key in sorted(set(data) - set(RESOURCES)):
            errors.append(
                err(
                    f"{name}: unknown resource {key!r} (known: {', '.join(RESOURCES)})",
                    f"{name}：未知资源 {key!r}（可用：{', '.join(RESOURCES)}）",
                )
            )
    if req.profile in ("custom", "airgap") and not custom:
        errors.append(
            err(
                f"mirrors_profile {req.profile} needs mirrors_custom_profile",
                f"mirrors_profile {req.profile} 需要设置 mirrors_custom_profile",
            )
        )
    return errors


def _profile_ids(
    profile: str, profiles: dict[str, Any], custom: dict[str, Any], host: dict[str, Any]
) -> dict[str, Any]:
    """The candidates a profile names per resource (auto: the cloud vendor's first)."""
    if profile in ("custom", "airgap"):
        return dict(custom.items())
    ids: dict[str, Any] = {}
    if profile in profiles:
        ids = {k: list(v) for k, v in profiles[profile].items()}
    if profile == "auto":
        vendor = profiles.get("auto_vendor", {}).get(str(host.get("system_vendor", "")), {})
        for res, vendor_ids in vendor.items():
            ids[res] = list(vendor_ids) + ids.get(res, [])
    return ids


def _groups(
    res: str,
    raw: Any,
    settings: dict[str, Any],
    by_id: dict[str, dict[str, Any]],
    host: dict[str, Any],
    profile: str,
    errors: list[dict[str, str]],
) -> dict[str, list[dict[str, Any]]]:
    """The candidates of one resource, by group (registries: one group per upstream)."""
    if res == "registries":
        groups = _registry_groups(raw, by_id, errors)
        extra = settings.get("extra", {}) or {}
        for up, hosts in sorted(extra.items()):
            groups[up] = [_normalise(res, h, by_id) for h in hosts]
        return groups
    cands = []
    for item in raw if isinstance(raw, list) else [raw]:
        if (
            isinstance(item, str)
            and "://" not in item
            and item not in by_id
            and res not in ("ntp", "dns")
        ):
            errors.append(
                err(f"{res}: unknown catalog id {item!r}", f"{res}：目录中不存在 id {item!r}")
            )
            continue
        cand = _normalise(res, item, by_id)
        if cand.get("resource") not in (None, res):
            errors.append(
                err(
                    f"{res}: catalog id {item!r} belongs to {cand['resource']}",
                    f"{res}：id {item!r} 属于 {cand['resource']}",
                )
            )
            continue
        cands.append(cand)
    paths = host_paths(host)
    if res == "apt":
        dist = str(host.get("distribution", "Debian"))
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
    return {res: cands}


def _probes(
    res: str,
    groups: dict[str, list[dict[str, Any]]],
    settings: dict[str, Any],
    host: dict[str, Any],
    blocked: Any,
) -> list[dict[str, Any]]:
    probes = []
    for group, cands in groups.items():
        for cand in cands:
            probe = _probe_spec(res, group, cand, settings, host)
            probe["blocked"] = sorted(set(probe["blocked"]) | set(blocked or []))
            probes.append(probe)
    return probes


def _plan_hash(req: PlanRequest, resources: dict[str, Any], host: dict[str, Any]) -> str:
    """Changes when anything the probes or the written files depend on changes."""
    return hashlib.sha256(
        json.dumps(
            {
                "profile": req.profile,
                "resources": resources,
                "catalog": req.catalog_version,
                "on_failure": req.on_failure,
                "require_digests": req.require_digests,
                "host": {k: host.get(k) for k in ("distribution", "version", "codename", "arch")},
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()


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
            err(
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
            err(
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
            err(
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
                err(
                    f"snap: mode {mode} needs a valid {key} (got {settings.get(key)!r})",
                    f"snap：mode {mode} 需要有效的 {key}",
                )
            )
    return errors


def _valid_store_id(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[A-Za-z0-9]{1,64}", value))


def _expand_apt(cand: dict[str, Any], paths: dict[str, str], dist: str) -> dict[str, Any]:
    if cand.get("source") != "catalog":
        cand.setdefault("security_url", cand["url"] if dist == "Ubuntu" else "")
        return cand
    root = str(cand["url"])
    cand["url"] = f"{root}{paths['apt_dir']}/"
    cand["security_url"] = cand["url"] if dist == "Ubuntu" else f"{root}debian-security/"
    return cand


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
                    err(
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
                err(
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
