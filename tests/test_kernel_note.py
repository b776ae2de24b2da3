"""`tierwise train` says when this machine's BLAS kernels cannot reproduce a model bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifiers.model_files import blas_kernels, kernel_note, trained_with


def _model_dir(tmp_path: Path, blas: str) -> Path:
    (tmp_path / "model.json").write_text(json.dumps({"trained_with": {"blas": blas}}))
    return tmp_path


def test_kernels_are_read_from_the_record() -> None:
    stack = {"blas": "openblas 0.3.30 Haswell; openblas 0.3.31.188.0 Haswell"}
    assert blas_kernels(stack) == {"Haswell"}
    assert blas_kernels({}) == set()


def test_same_kernels_need_no_note(tmp_path: Path) -> None:
    here = trained_with()["blas"]
    assert kernel_note(_model_dir(tmp_path, here)) is None


def test_other_kernels_are_named_with_the_pin(tmp_path: Path) -> None:
    ours = blas_kernels(trained_with())
    if not ours:
        pytest.skip("no BLAS kernel reported by threadpoolctl here")
    theirs = "Zen" if "Zen" not in ours else "Haswell"
    note = kernel_note(_model_dir(tmp_path, f"openblas 0.3.30 {theirs}"))
    assert note is not None
    assert f"({theirs})" in note and f"OPENBLAS_CORETYPE={theirs}" in note
    assert all(k in note for k in ours)


def test_a_model_without_a_record_or_file_gets_no_note(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("{}")
    assert kernel_note(tmp_path) is None
    assert kernel_note(tmp_path / "missing") is None
