"""``[calibration] profile`` in a scenario: validated up front, used by runs."""

from __future__ import annotations

import pytest

from simulator.errors import UserError
from simulator.gpu.calibration import run_kernels
from simulator.gpu.kernels import KernelModel
from simulator.gpu.profiled import ProfiledKernels
from simulator.gpu.profiles import calibration_dir
from simulator.hardware import gpu
from simulator.scenario import Scenario

BASE = """
[topology]
preset = "dgx_h100"
[model]
name = "llama-3-70b"
[workload]
kind = "agentic"
"""


def load(tmp_path, calibration: str) -> Scenario:
    path = tmp_path / "s.toml"
    path.write_text(BASE + "[calibration]\n" + calibration)
    return Scenario.load(path)


def test_no_profile_takes_the_measured_profiles(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE)
    kernels = run_kernels(Scenario.load(path).calibration_dict())
    assert isinstance(kernels, ProfiledKernels) and not kernels.profiles  # every GPU its own


@pytest.mark.parametrize("value", ['"roofline"', '"measured"', '"h100-vidur"',
                                   '{H100 = "h200", H20 = "h20"}'])
def test_a_profile_choice_loads(tmp_path, value):
    s = load(tmp_path, f"profile = {value}\n")
    kernels = run_kernels(s.calibration_dict())
    assert isinstance(kernels, KernelModel if value == '"roofline"' else ProfiledKernels)


def test_a_profile_file_is_found_relative_to_the_scenario(tmp_path):
    (tmp_path / "mine.toml").write_text(
        (calibration_dir() / "profiles" / "h20.toml").read_text().replace('"h20"', '"mine"'))
    s = load(tmp_path, 'profile = "mine.toml"\n')
    assert run_kernels(s.calibration_dict()).profile(gpu("H20")).name == "mine"


@pytest.mark.parametrize("calibration, message", [
    ('profile = "h9000"\n', "field 'calibration.profile': unknown kernel profile 'h9000'"),
    ("profile = 3\n", "field 'calibration.profile': 3: give \"roofline\""),
    ('profile = {H900 = "h200"}\n', "field 'calibration.profile': GPU kind 'H900'"),
    ('profile = "missing.toml"\n', "field 'calibration.profile': kernel profile file"),
])
def test_a_bad_profile_field_is_one_line_naming_it(tmp_path, calibration, message):
    with pytest.raises(UserError) as exc:
        load(tmp_path, calibration)
    assert message in str(exc.value) and "\n" not in str(exc.value)
