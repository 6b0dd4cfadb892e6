# Copyright: chutes.miner developers
# MIT License
"""Operator-facing messages of inventory validation: code -> problem and fix, EN + 中文.

Templates are filled with ``str.format_map`` from fields our code renders to strings (user
values arrive already shortened by ``inventory_schema.show``), so filling never fails.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    en: str
    zh: str
    fix_en: str
    fix_zh: str


_SCHEMA_FIX = Message(
    "",
    "",
    "Correct it in the inventory; it is documented in {where}.",
    "请在 inventory 中修正，说明见 {where}。",
)

MESSAGES: dict[str, Message] = {
    # Generic schema findings (inventory_schema.Finding.code).
    "wrong_type": Message(
        "{var} is {kind_en} {shown}, but it must be {expected_en}.",
        "{var} 当前为{kind_zh} {shown}，但应为 {expected_zh}。",
        _SCHEMA_FIX.fix_en,
        _SCHEMA_FIX.fix_zh,
    ),
    "out_of_range": Message(
        "{var}={shown} is out of range: it must be {expected_en}.",
        "{var}={shown} 超出范围：应为 {expected_zh}。",
        _SCHEMA_FIX.fix_en,
        _SCHEMA_FIX.fix_zh,
    ),
    "bad_format": Message(
        "{var}={shown} is malformed: it must be {expected_en}.",
        "{var}={shown} 格式错误：应为 {expected_zh}。",
        _SCHEMA_FIX.fix_en,
        _SCHEMA_FIX.fix_zh,
    ),
    "not_a_choice": Message(
        "{var}={shown} is not allowed: it must be {expected_en}.",
        "{var}={shown} 不是允许的取值：应为 {expected_zh}。",
        _SCHEMA_FIX.fix_en,
        _SCHEMA_FIX.fix_zh,
    ),
    "empty": Message(
        "{var} is empty: it must be {expected_en}.",
        "{var} 为空：应为 {expected_zh}。",
        _SCHEMA_FIX.fix_en,
        _SCHEMA_FIX.fix_zh,
    ),
    "unknown_key": Message(
        "{var} is not a known key: {expected_en}.",
        "{var} 不是可识别的键：应为 {expected_zh}。",
        "Remove or rename the key; see {where}.",
        "请删除或重命名该键，说明见 {where}。",
    ),
    "missing": Message(
        "{var} is not set: it must be {expected_en}.",
        "未设置 {var}：应为 {expected_zh}。",
        "Set it in the inventory; it is documented in {where}.",
        "请在 inventory 中设置，说明见 {where}。",
    ),
    "unresolvable": Message(
        "{var} cannot be templated: {error}.",
        "{var} 无法解析（模板求值失败）：{error}。",
        "Fix the Jinja expression or lookup in the value of {var}.",
        "请修正 {var} 取值中的 Jinja 表达式或 lookup。",
    ),
    # Groups and host names.
    "no_primary": Message(
        "there is no primary host.",
        "没有主节点。",
        "Put exactly one CPU host into group chutes_primary (or set is_primary: true on it).",
        "请把且只把一台 CPU 主机放入 chutes_primary 组（或在该主机上设置 is_primary: true）。",
    ),
    "many_primaries": Message(
        "{count} hosts are primaries ({hosts}); exactly one may be.",
        "有 {count} 台主节点（{hosts}）；只能有一台。",
        "Keep one host in chutes_primary (or with is_primary: true); make the others workers.",
        "chutes_primary 组中（或 is_primary: true）只保留一台主机，其余改为工作节点。",
    ),
    "primary_is_gpu": Message(
        "the primary is also a GPU host; the primary must be a CPU node.",
        "主节点同时是 GPU 主机；主节点必须是 CPU 节点。",
        "Remove it from chutes_gpu (or set gpu_enabled: false on it).",
        "请把它移出 chutes_gpu 组（或在该主机上设置 gpu_enabled: false）。",
    ),
    "primary_is_worker": Message(
        "the primary is also in chutes_workers.",
        "主节点同时属于 chutes_workers 组。",
        "Remove it from chutes_workers.",
        "请把它从 chutes_workers 组移除。",
    ),
    "no_gpu_worker": Message(
        "no GPU worker: chutes_gpu is empty, so the miner has nothing to offer validators.",
        "没有 GPU 工作节点：chutes_gpu 组为空，矿工无法向验证者提供算力。",
        "Put at least one GPU host into group chutes_gpu (upstream: gpu_enabled: true).",
        "请至少把一台 GPU 主机放入 chutes_gpu 组（上游写法：gpu_enabled: true）。",
    ),
    "flag_conflict": Message(
        "{var}: false disagrees with membership of group {group}.",
        "{var}: false 与 {group} 组成员关系矛盾。",
        "Remove the upstream flag or make it match the group.",
        "请删除该上游标志，或使其与分组一致。",
    ),
    "unknown_variable": Message(
        "{var} is not a variable of this collection, so it is ignored and the default applies; "
        "did you mean {suggestion}?",
        "{var} 不是本 collection 的变量，会被忽略并使用默认值；是否想写 {suggestion}？",
        "Rename it to {suggestion} (or remove it).",
        "请改名为 {suggestion}（或删除它）。",
    ),
    "stray_host": Message(
        "the host sets {vars} but belongs to none of chutes_primary, chutes_gpu, chutes_workers, "
        "so every play would skip it.",
        "该主机设置了 {vars}，但不属于 chutes_primary、chutes_gpu、chutes_workers 中的任何一组，"
        "所有 play 都会跳过它。",
        "Add it to chutes_gpu (GPU worker) or chutes_workers, or remove these variables.",
        "请把它加入 chutes_gpu（GPU 工作节点）或 chutes_workers，或删除这些变量。",
    ),
    "bad_node_name": Message(
        "{shown} is not a valid Kubernetes node name (lowercase letters, digits, '-' and '.', "
        "each label 1-63 characters starting and ending with a letter or digit).",
        "{shown} 不是合法的 Kubernetes 节点名（只能使用小写字母、数字、'-' 和 '.'，每段 1-63 "
        "个字符，首尾必须是字母或数字）。",
        "Rename the host in the inventory (or set base_hostname).",
        "请在 inventory 中重命名该主机（或设置 base_hostname）。",
    ),
    "hostname_too_long": Message(
        "{shown} has {length} characters; a Linux host name has at most {max}.",
        "{shown} 长 {length} 个字符；Linux 主机名最多 {max} 个字符。",
        "Use a shorter inventory name (or set a shorter base_hostname).",
        "请使用更短的 inventory 主机名（或设置更短的 base_hostname）。",
    ),
    "duplicate_hostname": Message(
        "hosts {hosts} would all be named {shown}; Kubernetes node names must be unique.",
        "主机 {hosts} 的主机名都将是 {shown}；Kubernetes 节点名必须唯一。",
        "Give every host its own base_hostname (or remove it to use the inventory name).",
        "请为每台主机设置不同的 base_hostname（或删除 base_hostname，改用 inventory 主机名）。",
    ),
    # Upstream names and cluster-wide values.
    "var_conflict": Message(
        "upstream {old}={old_value} and {var}={new_value} disagree.",
        "上游变量 {old}={old_value} 与 {var}={new_value} 不一致。",
        "Remove {old} or make both equal.",
        "请删除 {old} 或使两者相同。",
    ),
    "inconsistent": Message(
        "{var} differs between hosts ({values}); it is cluster-wide.",
        "{var} 在不同主机上取值不同（{values_zh}）；这是集群级变量。",
        "Set it once, in group_vars/all.",
        "请只在 group_vars/all 中设置一次。",
    ),
    # Connection and node addresses.
    "missing_ansible_host": Message(
        "ansible_host is not set, so Ansible would connect to the inventory name instead.",
        "未设置 ansible_host，Ansible 将改为连接 inventory 中的主机名。",
        "Set ansible_host to the address Ansible connects to (public IP, VPN or LAN address).",
        "请把 ansible_host 设置为 Ansible 连接的地址（公网 IP、VPN 或内网地址）。",
    ),
    "bad_ansible_host": Message(
        "ansible_host={shown} is {what}; nothing can connect to it.",
        "ansible_host={shown} 是{what_zh}，无法连接。",
        "Set ansible_host to the address Ansible connects to.",
        "请把 ansible_host 设置为 Ansible 实际连接的地址。",
    ),
    "loopback_ansible_host": Message(
        "ansible_host={shown} is the controller itself (loopback) and no forwarded ansible_port is "
        "set; Ansible would configure the controller instead of the node.",
        "ansible_host={shown} 指向控制机本身（回环地址），且未设置转发端口 ansible_port；Ansible "
        "会配置控制机而不是该节点。",
        "Set ansible_host to the node's address (through an SSH tunnel or port forward: set "
        "ansible_port to the forwarded port).",
        "请把 ansible_host 设置为该节点的地址（经 SSH 隧道或端口转发时，"
        "请把 ansible_port 设置为转发端口）。",
    ),
    "duplicate_ansible_host": Message(
        "hosts {hosts} all connect to {shown}; Ansible would configure one machine several times.",
        "主机 {hosts} 都连接到 {shown}；Ansible 会把同一台机器配置多次。",
        "Give every host its own ansible_host (or its own ansible_port behind one address).",
        "请为每台主机设置不同的 ansible_host（或在同一地址后使用不同的 ansible_port）。",
    ),
    "missing_external_ip": Message(
        "chutes_external_ip is not set.",
        "未设置 chutes_external_ip。",
        "Set it to the host's static public IPv4 address (upstream: external_ip).",
        "请设置为该主机的静态公网 IPv4 地址（上游写法：external_ip）。",
    ),
    "special_address": Message(
        "{var}={shown} is {what}, never a node address.",
        "{var}={shown} 是{what_zh}，不能作为节点地址。",
        "Use the host's real address.",
        "请使用该主机的真实地址。",
    ),
    "placeholder_address": Message(
        "{var}={shown} is a documentation example address (RFC 5737), not a real one.",
        "{var}={shown} 是文档示例地址（RFC 5737），不是真实地址。",
        "Replace the example value with the host's real address.",
        "请把示例值替换为该主机的真实地址。",
    ),
    "private_external_ip": Message(
        "chutes_external_ip={shown} is not a public address; validators must reach it.",
        "chutes_external_ip={shown} 不是公网地址，验证者无法访问。",
        "Use the public IPv4, or set chutes_cluster_private: true for a private test cluster.",
        "请使用公网 IPv4；私有测试集群可设置 chutes_cluster_private: true。",
    ),
    "duplicate_external_ip": Message(
        "chutes_external_ip {shown} is used by several hosts ({hosts}).",
        "chutes_external_ip {shown} 被多台主机使用（{hosts}）。",
        "Every node needs its own public IPv4 with 1:1 ports.",
        "每个节点需要独立的公网 IPv4，且端口一一对应。",
    ),
    # WireGuard and the cluster address plan.
    "missing_wireguard_address": Message(
        "wireguard_address is not set.",
        "未设置 wireguard_address。",
        "Give the host a unique plain IPv4 address inside wireguard_network ({network}).",
        "请为该主机分配 wireguard_network（{network}）内唯一的纯 IPv4 地址。",
    ),
    "wireguard_outside": Message(
        "wireguard_address={shown} is outside wireguard_network {network}.",
        "wireguard_address={shown} 不在 wireguard_network {network} 内。",
        "Pick a host address inside {network}.",
        "请在 {network} 内选择主机地址。",
    ),
    "wireguard_reserved": Message(
        "wireguard_address={shown} is the network or broadcast address of {network}.",
        "wireguard_address={shown} 是 {network} 的网络地址或广播地址。",
        "Pick a host address between the first and the last one.",
        "请选择首尾之间的主机地址。",
    ),
    "duplicate_wireguard_address": Message(
        "wireguard_address {shown} is used by several hosts ({hosts}).",
        "wireguard_address {shown} 被多台主机使用（{hosts}）。",
        "Give each host its own address inside wireguard_network.",
        "请为每台主机分配 wireguard_network 内不同的地址。",
    ),
    "special_network": Message(
        "{var}={network}{default} overlaps {what}.",
        "{var}={network}{default_zh} 与{what_zh}重叠。",
        "Use a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10).",
        "请使用私有网段（10.0.0.0/8、172.16.0.0/12、192.168.0.0/16 或 100.64.0.0/10）。",
    ),
    "networks_overlap": Message(
        "{var}={network}{default} overlaps {other}={other_network}{other_default}; "
        "WireGuard, pod and service ranges must be disjoint.",
        "{var}={network}{default_zh} 与 {other}={other_network}{other_default_zh} 重叠；"
        "WireGuard、Pod 与 Service 网段不能相交。",
        "Move one of them to a range used nowhere else, e.g. set {other} or {var}.",
        "请把其中一个改到未被使用的网段，例如修改 {other} 或 {var}。",
    ),
    "network_contains_host": Message(
        "{var}={network}{default} contains {addr_var}={shown} of this host; traffic to the host "
        "would be routed into the {purpose}.",
        "{var}={network}{default_zh} 包含该主机的 {addr_var}={shown}；发往该主机的流量会被路由进"
        "{purpose_zh}。",
        "Move {var} to a range that holds no host address.",
        "请把 {var} 改到不包含任何主机地址的网段。",
    ),
    "hub_without_endpoint": Message(
        "the WireGuard hub has no endpoint (wireguard_endpoint and chutes_external_ip are empty); "
        "every node dials it.",
        "WireGuard 中心节点没有可拨入地址（wireguard_endpoint 与 chutes_external_ip 均为空）；"
        "所有节点都要连接它。",
        "Set chutes_external_ip (or wireguard_endpoint) on the primary.",
        "请在主节点上设置 chutes_external_ip（或 wireguard_endpoint）。",
    ),
    "group_size": Message(
        "{var}={shown}: group {shown} holds {count} host(s); it must hold {need}.",
        "{var}={shown}：{shown} 组有 {count} 台主机；应为 {need_zh}。",
        "Point {var} at an existing group of the inventory (default {default}).",
        "请让 {var} 指向 inventory 中存在的组（默认 {default}）。",
    ),
    # Ports, validators, base, GPUs.
    "port_clash": Message(
        "chutes_registry_port and miner_api_node_port are both {shown}.",
        "chutes_registry_port 与 miner_api_node_port 都是 {shown}。",
        "Pick two different NodePorts (defaults 30500 and 32000).",
        "请选择两个不同的 NodePort（默认 30500 与 32000）。",
    ),
    "duplicate_hotkey": Message(
        "validator hotkey {shown} is listed more than once in chutes_validators.",
        "验证者 hotkey {shown} 在 chutes_validators 中出现了多次。",
        "Keep one entry per validator.",
        "每个验证者只保留一项。",
    ),
    "nofile_order": Message(
        "base_nofile_soft={soft} is above base_nofile_hard={hard}.",
        "base_nofile_soft={soft} 大于 base_nofile_hard={hard}。",
        "The soft limit must not exceed the hard limit (pam_limits would refuse logins).",
        "软限制不能超过硬限制（否则 pam_limits 会拒绝登录）。",
    ),
    "missing_gpu_model": Message(
        "GPU host without chutes_gpu_model.",
        "GPU 主机未设置 chutes_gpu_model。",
        "Set one of {models}, or auto to read it with nvidia-smi.",
        "请设置为 {models} 之一，或设为 auto 由 nvidia-smi 检测。",
    ),
    "missing_gpu_count": Message(
        "GPU host without chutes_gpu_count (chutes_gpu_model is {shown}).",
        "GPU 主机未设置 chutes_gpu_count（chutes_gpu_model 为 {shown}）。",
        "Set the number of GPUs in the host (1-{max}), or chutes_gpu_model: auto.",
        "请设置该主机的 GPU 数量（1-{max}），或设置 chutes_gpu_model: auto。",
    ),
    "mirrors_input": Message(
        "{text_en}",
        "{text_zh}",
        "Correct mirrors_profile, mirrors_overrides or mirrors_custom_profile; see {where}.",
        "请修正 mirrors_profile、mirrors_overrides 或 mirrors_custom_profile，说明见 {where}。",
    ),
    "mirrors_unreadable": Message(
        "{var} has a value the mirrors role cannot read: {shown} ({error}).",
        "{var} 的取值无法被 mirrors 角色读取：{shown}（{error}）。",
        "Give each resource a list of catalog ids or http(s) URLs (mirrors_custom_profile), or a "
        "mapping of settings (mirrors_overrides); see {where}.",
        "请为每个资源提供目录 id 或 http(s) URL 的列表（mirrors_custom_profile），或设置项字典"
        "（mirrors_overrides），说明见 {where}。",
    ),
    # Inventory sources (files).
    "duplicate_key": Message(
        "{file}:{line}: key {shown} appears twice in one mapping; YAML keeps only the last one.",
        "{file}:{line}：同一映射中键 {shown} 出现了两次；YAML 只保留最后一个。",
        "Remove or rename one of them (a repeated host name silently merges two hosts).",
        "请删除或重命名其中一个（重复的主机名会把两台主机悄悄合并为一台）。",
    ),
    "duplicate_ini_entry": Message(
        "{file}:{line}: {shown} appears twice in one group (or [group:vars] section); Ansible "
        "keeps only the last one.",
        "{file}:{line}：{shown} 在同一组（或 [组:vars] 段）中出现了两次；Ansible 只保留最后一个。",
        "Remove or rename one of them (a repeated host name silently merges two hosts).",
        "请删除或重命名其中一个（重复的主机名会把两台主机悄悄合并为一台）。",
    ),
    "unparsed_source": Message(
        "{file} could not be parsed ({error}); Ansible would skip it and carry on without it.",
        "{file} 无法解析（{error}）；Ansible 会跳过它并在缺少它的情况下继续运行。",
        "Fix the file (yamllint shows where), then run the playbook again.",
        "请修正该文件（可用 yamllint 定位），然后重新运行。",
    ),
    "inventory_shape": Message(
        "{file}: {part_en}; Ansible skips it with only a warning (or drops the whole file), so "
        "what it holds is lost.",
        "{file}：{part_zh}；Ansible 只给出警告就跳过它（或丢弃整个文件），其中的内容会丢失。",
        "Write every group as a mapping with only vars, hosts and children, each a mapping (host "
        "names as strings); see inventories/example/inventory.yml.",
        "请把每个组写成只含 vars、hosts、children 的字典，它们也都是字典（主机名为字符串），"
        "参见 inventories/example/inventory.yml。",
    ),
    "ignored_source": Message(
        "{file} declares hosts that are not in the loaded inventory ({hosts}); Ansible could not "
        "use the file.",
        "{file} 中声明的主机不在已加载的 inventory 中（{hosts}）；Ansible 未能使用该文件。",
        "Fix the file (ansible-inventory -i FILE --list shows why), then run the playbook again.",
        "请修正该文件（ansible-inventory -i 文件 --list 可显示原因），然后重新运行。",
    ),
    "missing_source": Message(
        "inventory source {file} does not exist.",
        "inventory 来源 {file} 不存在。",
        "Pass an existing file or directory with -i.",
        "请用 -i 指定存在的文件或目录。",
    ),
    "rule_failed": Message(
        "check {rule} stopped on an unexpected value ({error}); the other checks ran.",
        "检查项 {rule} 遇到意外取值而中止（{error}）；其他检查已完成。",
        "Please report it with the inventory (values replaced); check the values it reads.",
        "请附上 inventory（替换敏感值）报告此问题；同时请检查它读取的变量。",
    ),
    # Notices (no failure).
    "upstream_names": Message(
        "this inventory uses upstream chutes-miner names, read as the new ones: {pairs}.",
        "该 inventory 使用上游 chutes-miner 的变量名，已按新变量名读取：{pairs}。",
        "Rename them when convenient (chutes_upstream_compat: false turns this off).",
        "方便时请改用新变量名（chutes_upstream_compat: false 可关闭此兼容）。",
    ),
    "upstream_gpu_auto": Message(
        "{count} upstream GPU host(s) declare no chutes_gpu_model: set to auto ({hosts}).",
        "{count} 台上游 GPU 主机未声明 chutes_gpu_model：已设为 auto（{hosts}）。",
        "preflight reads model and count with nvidia-smi; set chutes_gpu_model to skip that.",
        "preflight 会用 nvidia-smi 读取型号和数量；设置 chutes_gpu_model 可跳过检测。",
    ),
}

NOTICES = frozenset({"upstream_names", "upstream_gpu_auto"})
