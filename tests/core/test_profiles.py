
import pytest

from kdutils.core import profiles


def test_profile_resolution(monkeypatch):
    monkeypatch.delenv("KD_PROFILE", raising=False)
    assert profiles.resolve_profile() == "quick"
    monkeypatch.setenv("KD_PROFILE", "smoke")
    assert profiles.resolve_profile() == "smoke"
    assert profiles.resolve_profile("full") == "full"  # the parameter wins
    with pytest.raises(ValueError, match="smoke, quick, full"):
        profiles.resolve_profile("fast")


def test_resolve_settings_and_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KD_PROFILE", "smoke")
    monkeypatch.delenv("KD_DATA_ROOT", raising=False)
    s = profiles.resolve(settings={"smoke": {"epochs": 1}, "quick": {"epochs": 5}}, overrides={"epochs": None})
    assert s.profile == "smoke" and s["epochs"] == 1 and s.data_root is None
    monkeypatch.setenv("KD_DATA_ROOT", str(tmp_path))
    s = profiles.resolve("quick", settings={"quick": {"epochs": 5}}, overrides={"epochs": 2})
    assert s.data_root == tmp_path and s["epochs"] == 2

