"""Fact sets of the platforms the render and plan tests cover."""

from __future__ import annotations

from typing import Any

HOSTS: dict[str, dict[str, Any]] = {
    "debian12": {
        "distribution": "Debian",
        "version": "12",
        "codename": "bookworm",
        "arch": "x86_64",
        "apt_origin": {
            "base": "http://deb.example.invalid/debian/",
            "security": "http://deb.example.invalid/debian-security/",
        },
    },
    "ubuntu2204": {
        "distribution": "Ubuntu",
        "version": "22.04",
        "codename": "jammy",
        "arch": "x86_64",
        "apt_origin": {},
    },
    "ubuntu2404": {
        "distribution": "Ubuntu",
        "version": "24.04",
        "codename": "noble",
        "arch": "x86_64",
        "apt_origin": {},
    },
    "ubuntu2404_arm64": {
        "distribution": "Ubuntu",
        "version": "24.04",
        "codename": "noble",
        "arch": "aarch64",
        "apt_origin": {},
    },
}
