"""Regenerate docs/presets.md's key tables from the stage configs (run: .venv/bin/python docs/make_presets_md.py)."""

import dataclasses
import inspect
import re
from pathlib import Path

from mllm_safety.core import config as c

HEAD = Path(__file__).with_name("presets.md").read_text(encoding="utf-8").split("## Keys by stage")[0]


def rows(cls: type) -> list[str]:
    body = inspect.getsource(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name == "preset":
            continue
        m = re.search(rf"^    {f.name}: .*?=\s*(.*?)(?:\s+#\s*(.*))?$", body, re.M)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = repr(default).replace("|", "\\|")
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        out.append(f"| `{f.name}` | `{shown}` | {(m.group(2) or '') if m else ''} |")
    return out


parts = [HEAD.rstrip() + "\n\n## Keys by stage\n"]
for name, cls in [
    ("data", c.DataConfig),
    *c.CONFIGS.items(),
    ("engine (how stage 05 runs its cells)", c.ExecutorConfig),
]:
    parts.append(f"\n### {name}\n\n| key | default | notes |\n|---|---|---|\n" + "\n".join(rows(cls)) + "\n")
Path(__file__).with_name("presets.md").write_text("".join(parts), encoding="utf-8")
