"""Shared test set-up: exported ONNX models are cached in a temporary folder, never in
the user's cache (export.CACHE_ENV)."""

import pytest


@pytest.fixture(autouse=True)
def onnx_cache_folder(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NRKDEBLUR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "onnx-cache"))
