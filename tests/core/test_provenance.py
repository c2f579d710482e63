"""Provenance (`rapref.provenance`) records rapref's own commit, or "unknown", never the commit of a repository that
merely encloses the tree; RAPREF_COMMIT names it where there is no repository."""

import subprocess

from helpers import ROOT
from rapref.provenance import git_hash


def test_provenance_records_rapref_own_commit_or_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("RAPREF_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if head:  # a checkout of rapref: its HEAD
        assert git_hash() == head
    other = tmp_path / "other"  # another project's repository, as on a machine the tree was copied into
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "not-rapref"\n')
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    subprocess.run([*git, "add", "pyproject.toml"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=other, check=True)
    assert git_hash(other) == "unknown"
    assert git_hash(tmp_path) == "unknown"  # no repository at all
    monkeypatch.setenv("RAPREF_COMMIT", "0123abc")
    assert git_hash(other) == "0123abc"
