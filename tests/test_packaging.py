"""The wheel carries every module and data file: `pip install .` must work with no source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_module_and_data_file(tmp_path: Path) -> None:
    # Build from a clean copy: setuptools reuses build/ and *.egg-info in the source tree, which
    # can hide a package the configuration leaves out.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("router", "classifiers", "policies"):
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    # Build isolation fetches setuptools/wheel from the package index, as `pip install .` does.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("tierwise-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p.relative_to(ROOT).as_posix()
              for package in ("router", "classifiers", "policies")
              for p in (ROOT / package).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts]
    assert any(w.startswith("router/state/") for w in wanted)
    missing = [w for w in wanted if w not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert "classifiers/model/model.onnx" in names and "policies/demo.toml" in names
