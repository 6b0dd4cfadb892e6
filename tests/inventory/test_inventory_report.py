"""The report an operator reads: one table, hosts with the same problem on one row, each
language's lines whole and in the chosen order."""

from __future__ import annotations

from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_report import (
    languages,
    render,
    width,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import problem

from tests.inventory.conftest import check, valid


def _result(*problems: object) -> dict[str, object]:
    return {"problems": [p.as_dict() for p in problems], "notices": []}  # type: ignore[attr-defined]


def test_same_problem_on_several_hosts_is_one_row() -> None:
    inv = valid()
    for host in ("gpu-0", "gpu-1"):
        inv.host(host)["wireguard_mtu"] = 99
    inv.host("cpu-0")["wireguard_port"] = 0
    text = render(check(inv).as_dict(), ["en", "zh"])
    lines = text.splitlines()
    assert lines[0] == "Inventory validation found 2 problem(s); no host was contacted or changed."
    assert lines[1] == "节点清单校验发现 2 个问题；未连接也未修改任何主机。"
    assert lines[3].split() == [
        "HOST",
        "/",
        "主机",
        "VARIABLE",
        "/",
        "变量",
        "PROBLEM",
        "→",
        "FIX",
        "/",
        "问题",
        "→",
        "修复",
    ]
    rows = [line for line in lines if line[:3].strip().endswith(".")]
    assert len(rows) == 2
    assert rows[0].startswith(" 1. cpu-0") and "wireguard_port=0 is out of range" in rows[0]
    assert rows[1].startswith(" 2. gpu-0, gpu-1") and "wireguard_mtu=99" in rows[1]
    column = rows[0].index("wireguard_port=0")
    body = lines[lines.index(rows[0]) + 1 : lines.index(rows[0]) + 4]
    assert [line[:column].strip() for line in body] == ["", "", ""]  # aligned under the text
    assert body[0][column:].startswith("→ Correct it in the inventory")
    assert body[1][column:].startswith("wireguard_port=0 超出范围")
    assert body[2][column:].startswith("→ 请在 inventory 中修正")


def test_language_choice_and_order() -> None:
    result = _result(problem("no_primary", "all"))
    zh_only = render(result, ["zh"]).splitlines()
    assert zh_only[0].startswith("节点清单校验发现 1 个问题")
    assert all("no primary host" not in line and "fix" not in line for line in zh_only)
    both = render(result, ["zh", "en"]).splitlines()
    assert both[0].startswith("节点清单校验") and both[1].startswith("Inventory validation")
    assert both[4].startswith(" 1. 全部/all") and "没有主节点" in both[4]
    assert languages("zh") == ["zh"]
    assert languages(["zh", "en", "zh"]) == ["zh", "en"]
    assert languages("fr") == languages(None) == languages([3]) == ["en", "zh"]


def test_many_hosts_are_counted_not_listed() -> None:
    problems = [problem("missing_ansible_host", f"gpu-{i:02}", "ansible_host") for i in range(20)]
    text = render(_result(*problems), ["en"])
    assert "gpu-00, gpu-01, gpu-02, gpu-03, gpu-04, gpu-05, gpu-06, gpu-07 (+12 more)" in text
    assert text.count("ansible_host is not set") == 1


def test_long_cells_do_not_break_the_columns() -> None:
    name = "a-very-long-host-name-" + "x" * 30
    text = render(_result(problem("primary_is_worker", name)), ["en"]).splitlines()
    assert text[3] == f" 1. {name}"
    assert text[4].strip() == "-"
    assert text[5].strip() == "the primary is also in chutes_workers."


def test_notices_alone_do_not_say_failed() -> None:
    result = {
        "problems": [],
        "notices": [problem("upstream_names", "all", pairs="user → base_admin_user (3)").as_dict()],
    }
    text = render(result, ["en", "zh"])
    assert text.splitlines()[0] == "Inventory notices: 节点清单提示："
    assert "found" not in text
    assert render({"problems": [], "notices": []}, ["en"]) == ""


def test_east_asian_width() -> None:
    assert width("主机") == 4 and width("host") == 4
