"""Read what Galaxy's importer made of the tarball; exit 1 with the reasons when Galaxy would
show something wrong: an importer error or warning, an undocumented plugin, a plugin whose docs
are another plugin's, no README.

Usage: importer_check.py IMPORTER_LOG IMPORTER_RESULT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Content types that carry their own DOCUMENTATION (action plugins are documented by the
# module of the same name; module_utils have none).
DOCUMENTED = {"module", "filter", "test", "lookup", "inventory", "callback", "connection"}


# The one warning allowed: Galaxy mentions every ignore file. Each entry of ours says why it is
# there (test_galaxy_metadata.py checks that); most are the GPLv3 header check, which does not
# apply to an MIT collection.
IGNORE_FILE_WARNING = "WARNING: Ignore files skip ansible-test sanity tests, found ignore-"


def problems(log: str, result: dict[str, Any]) -> list[str]:
    found = [
        f"importer: {line}"
        for line in log.splitlines()
        if (line.startswith(("ERROR:", "WARNING:")) and not line.startswith(IGNORE_FILE_WARNING))
        or "failed" in line.lower()
    ]
    blob = result.get("docs_blob") or {}
    if not (blob.get("collection_readme") or {}).get("html"):
        found.append("no collection README in the import result")
    for content in blob.get("contents") or []:
        kind, name = content["content_type"], content["content_name"]
        if kind not in DOCUMENTED:
            continue
        docs = (content.get("doc_strings") or {}).get("doc") or {}
        if not docs:
            found.append(f"{kind} {name}: no documentation")
            continue
        documented = docs.get("module") if kind == "module" else docs.get("name")
        if documented != name:
            found.append(f"{kind} {name}: shows the documentation of {documented!r}")
        if not docs.get("version_added"):
            found.append(f"{kind} {name}: no version_added")
        if not (content.get("doc_strings") or {}).get("examples"):
            found.append(f"{kind} {name}: no EXAMPLES")
    return found


def main(argv: list[str]) -> int:
    log = Path(argv[1]).read_text()
    result = json.loads(Path(argv[2]).read_text())
    found = problems(log, result)
    for line in found:
        print(line, file=sys.stderr)  # noqa: T201  # a command-line check
    contents = result.get("contents", [])
    kinds = ", ".join(sorted({c["content_type"] for c in contents}))
    print(f"galaxy-importer: {len(contents)} contents ({kinds}), {len(found)} problems")  # noqa: T201
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
