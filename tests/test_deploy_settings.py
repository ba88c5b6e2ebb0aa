"""A broken deployment settings file is a one-line error naming the file and what is wrong, not a traceback."""

from pathlib import Path

import pytest
import yaml

from rag_assets.deployment import DEFAULT_SETTINGS, DeploymentSettingsError, read_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_misspelled_key_and_a_bad_value_are_named(tmp_path: Path):
    settings = yaml.safe_load(DEFAULT_SETTINGS.read_text())
    settings["gpu_workload"] = settings.pop("gpu_workloads")  # typo
    settings["executor"] = "kubernetes"
    with pytest.raises(DeploymentSettingsError) as caught:
        read_settings(write(tmp_path, yaml.safe_dump(settings)))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "settings.yaml") in message
    assert "gpu_workload: Extra inputs are not permitted" in message and "executor: Input should be 'multiprocess' or 'k8s'" in message


def test_invalid_yaml_and_an_empty_file(tmp_path: Path):
    with pytest.raises(DeploymentSettingsError, match=r"settings.yaml is not valid YAML: .*line 2"):
        read_settings(write(tmp_path, "executor: k8s\ncpu: [unclosed\n"))
    with pytest.raises(DeploymentSettingsError, match=r"settings.yaml: the file: Input should be a valid dictionary"):
        read_settings(write(tmp_path, ""))


def test_the_shipped_file_reads():
    assert read_settings(DEFAULT_SETTINGS).executor in ("multiprocess", "k8s")
