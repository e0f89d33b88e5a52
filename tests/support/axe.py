"""axe-core (npm) for the accessibility checks of the browser tests.

Installed on first use with ``npm install --prefix`` into ``.venv/axe-core`` (or
$STREAMWARD_AXE_DIR): nothing from node_modules is committed, and `make test` / CI need only npm.
The version is pinned so that a new axe release cannot change what passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

AXE_VERSION = "4.14.1"
ROOT = Path(__file__).resolve().parents[2]
AXE_DIR = Path(os.environ.get("STREAMWARD_AXE_DIR", ROOT / ".venv" / "axe-core"))
REQUIRE_BROWSER = os.environ.get("STREAMWARD_REQUIRE_BROWSER") == "1"


def axe_script() -> str:
    """The text of axe.min.js, installing the pinned axe-core first if it is not there yet."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    package = AXE_DIR / "node_modules" / "axe-core" / "package.json"
    if not script.exists() or f'"version": "{AXE_VERSION}"' not in package.read_text():
        npm = shutil.which("npm")
        if npm is None:
            if REQUIRE_BROWSER:
                raise pytest.UsageError(
                    "npm is required (CI) to install axe-core for the accessibility tests"
                )
            pytest.skip("npm not installed: no axe-core for the accessibility checks")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(AXE_DIR),
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--no-package-lock",
                "--silent",
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            timeout=300,
        )
    return script.read_text()


# Runs in the page (through the DevTools protocol, so the page's CSP does not apply to it): the
# violations of one part of the page, reduced to what a report needs.
RUN_AXE = """async (selector) => {
  const context = selector ? document.querySelector(selector) : document;
  const result = await axe.run(context, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""
