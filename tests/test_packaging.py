"""What each published distribution carries: its license, its links, docs links that work anywhere."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
URLS = {
    "Homepage": "https://github.com/tnm-circuit/tnm-circuit",
    "Documentation": "https://tnm-circuit.github.io/tnm-circuit/",
    "Changelog": "https://github.com/tnm-circuit/tnm-circuit/blob/main/CHANGELOG.md",
    "Issues": "https://github.com/tnm-circuit/tnm-circuit/issues",
}
SITE_PAGE = re.compile(r"https://tnm-circuit\.github\.io/tnm-circuit/([a-z/-]*)")


class TestMetadata:
    def test_repository_has_an_mit_license(self) -> None:
        """The repository's LICENSE is the MIT license."""
        assert (ROOT / "LICENSE").read_text().startswith("MIT License")

    @pytest.mark.parametrize("package", PACKAGES)
    def test_each_package_has_license_and_urls(self, package: str) -> None:
        """Each package has the LICENSE, declares it, and links home, docs, changelog and issues."""
        folder = ROOT / "packages" / package
        assert (folder / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        assert project["license"] == "MIT"
        assert project["license-files"] == ["LICENSE"]
        assert project["urls"] == URLS

    @pytest.mark.parametrize("package", PACKAGES)
    def test_readme_links_docs_pages_that_exist(self, package: str) -> None:
        """A package README links the documentation site's pages by URL (each one a real page),
        never a docs/ folder its readers do not have."""
        text = (ROOT / "packages" / package / "README.md").read_text()
        assert "docs/" not in SITE_PAGE.sub("", text)
        pages = SITE_PAGE.findall(text)
        assert pages
        for page in pages:
            source = ROOT / "docs" / (page.rstrip("/") or "index")
            assert source.with_suffix(".md").exists() or (source / "index.md").exists(), page


@pytest.mark.slow
@pytest.mark.parametrize("package", PACKAGES)
def test_wheel_and_sdist_carry_the_license_and_urls(package: str, tmp_path: Path) -> None:
    """The built wheel and sdist each contain LICENSE, and the wheel's metadata has the project URLs."""
    subprocess.run(
        ["uv", "build", "-q", "--package", package, "--out-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    (sdist,) = tmp_path.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls == URLS
    assert metadata["License-Expression"] == "MIT"
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("/LICENSE") and n.count("/") == 1 for n in archive.getnames())


class TestRepositoryReadme:
    def test_setup_names_what_the_suite_needs_before_running_it(self) -> None:
        """The "Set up" section names redis-server, openssl and Chromium before the test command, and no
        longer says nothing else is needed."""
        text = (ROOT / "README.md").read_text()
        setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
        command = setup.index("uv run pytest")
        for need in ("redis-server", "openssl", "Chromium"):
            assert setup.index(need) < command, need
        assert "nothing else to set up" not in setup

    def test_examples_say_what_they_need(self) -> None:
        """The Celery example's Redis needs are in the README, and the operator commands say how
        to run them in the workspace."""
        text = (ROOT / "README.md").read_text()
        assert "127.0.0.1:6379" in text.split("examples/celery_app.py", 1)[1].split("\n\n", 1)[0]
        assert "uv run tnm-circuit" in text.split("### Operators", 1)[1].split("\n## ", 1)[0]


# Guide pages documenting something added after the last release, and what each must mark.
MARKED = {
    "policies.md": "failure_rate_threshold",
    "operations.md": "would_reject",
    "httpx.md": "Retry-After",
    "testing.md": "mirror_state",
    "redis.md": "Sentinel",
    "fastapi.md": "InvalidConfigTypeError",
    "celery.md": "autoretry_for",
    "cli.md": "--allow-empty",
}


class TestGuideMarkers:
    def test_markers_name_a_version_after_the_last_release(self) -> None:
        """Every "New in"/"Changed in" marker names a released version or the next one, never older."""
        changelog = (ROOT / "CHANGELOG.md").read_text()
        released = re.findall(r"^## (\d+)\.(\d+)\.\d+", changelog, re.MULTILINE)
        latest = max((int(a), int(b)) for a, b in released)
        for page in (ROOT / "docs" / "guide").glob("*.md"):
            for major, minor in re.findall(r"(?:New|Changed) in (\d+)\.(\d+)", page.read_text()):
                assert (int(major), int(minor)) <= (latest[0], latest[1] + 1), page.name

    @pytest.mark.parametrize(("page", "feature"), sorted(MARKED.items()))
    def test_new_features_are_marked(self, page: str, feature: str) -> None:
        """A page that documents a feature added after the last release says so next to it."""
        text = (ROOT / "docs" / "guide" / page).read_text()
        marked = [m.start() for m in re.finditer(r"\*(?:New|Changed) in 0\.4", text)]
        assert marked, page
        assert any(abs(text.find(feature, max(0, at - 1500)) - at) < 1500 for at in marked), page
