"""Device profiles (TOML data) and detection on fake /proc trees built in tmp_path (real files, real parsing)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from devices.detect import detect, gather
from devices.profiles import BUILTIN_DIR, ProfileError, load_profile, load_profiles

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "jetson-orin-nx", "jetson-orin-agx",
            "core-ultra-meteor-lake", "core-ultra-lunar-lake", "generic-x86-64", "generic-arm64"}


def fake_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


def test_builtin_profiles_load_and_say_what_to_run_and_build():
    profiles = load_profiles([BUILTIN_DIR])
    assert set(profiles) == EXPECTED
    for p in profiles.values():
        assert p.prefer and p.convert_targets and p.description
    rpi = profiles["rpi5"].prefer[0]
    assert (rpi.format, rpi.precision, rpi.backend, rpi.accelerator, rpi.threads) == ("tflite", "int8", "litert",
                                                                                     "cpu", 4)
    jet = profiles["jetson-orin-nano"].prefer
    assert [(p.backend, p.accelerator) for p in jet[:2]] == [("onnxruntime", "tensorrt")] * 2  # TensorRT first
    assert [p.accelerator for p in jet].index("cuda") > 1 and any(p.backend == "litert" for p in jet)
    cu = [p.accelerator for p in profiles["core-ultra-meteor-lake"].prefer if p.backend == "openvino"]
    assert cu.index("NPU") < cu.index("GPU") < cu.index("CPU")
    assert ("openvino", "int8") in profiles["core-ultra-lunar-lake"].convert_targets


@pytest.mark.parametrize("text, key", [
    ('name = "x"\ndescription = "d"\n[[prefer]]\nformat = "tflite"\nprecision = "int4"\nbackend = "litert"\n'
     'accelerator = "cpu"\n', "prefer[0].precision"),
    ('name = "x"\ndescription = "d"\n[[prefer]]\nformat = "tflite"\nprecision = "fp32"\nbackend = "openvino"\n'
     'accelerator = "CPU"\n', "prefer[0].format"),
    ('name = "x"\ndescription = "d"\n', "prefer"),
    ('name = "x"\ndescription = "d"\ncolour = 1\n', "colour"),
    ('name = "x"\ndescription = "d"\n[detect]\ncpu_model = ["(unclosed"]\n', "detect.cpu_model"),
])
def test_bad_profile_is_one_line_naming_file_and_key(tmp_path, text, key):
    f = tmp_path / "board.toml"
    f.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and f"{key}:" in msg


def test_not_toml_is_one_line(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("name = \n")
    with pytest.raises(ProfileError, match="broken.toml: not valid TOML"):
        load_profile(f)


def test_user_profiles_add_and_override(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "rpi5.toml").write_text((BUILTIN_DIR / "rpi5.toml").read_text().replace(
        "Raspberry Pi 5 / 500", "My overclocked Pi 5"))
    (user / "myboard.toml").write_text('name = "myboard"\ndescription = "a board"\n[detect]\narch = ["riscv64"]\n'
                                       'generic = true\n[[prefer]]\nformat = "tflite"\nprecision = "fp32"\n'
                                       'backend = "litert"\naccelerator = "cpu"\nthreads = 2\n')
    monkeypatch.setenv("EDGE_POSE_DEVICES_DIR", str(user))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    profiles = load_profiles()
    assert "myboard" in profiles and profiles["rpi5"].description.startswith("My overclocked")
    assert profiles["rpi5"].source == user / "rpi5.toml"
    d = detect(root=tmp_path / "none", profiles=profiles, machine="riscv64", ov_devices=None)
    assert d.profile.name == "myboard"


def test_detects_rpi5_from_device_tree(tmp_path):
    root = fake_tree(tmp_path, {"proc/device-tree/model": b"Raspberry Pi 5 Model B Rev 1.0\x00",
                                "proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 108.00\nprocessor\t: 1\n"})
    d = detect(root=root, machine="aarch64", ov_devices=None)
    assert d.profile.name == "rpi5"
    assert any("Raspberry Pi 5" in r for r in d.reasons)
    assert d.facts.cpu_count == 2


def test_detects_rpi4_from_cpuinfo_model_line(tmp_path):
    root = fake_tree(tmp_path, {"proc/cpuinfo": "processor\t: 0\nHardware\t: BCM2835\n"
                                                "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"})
    assert detect(root=root, machine="aarch64", ov_devices=None).profile.name == "rpi4"


def test_detects_jetson_orin_nano_with_tegra_release(tmp_path):
    root = fake_tree(tmp_path, {
        "proc/device-tree/model": b"NVIDIA Jetson Orin Nano Developer Kit\x00",
        "proc/device-tree/compatible": b"nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00",
        "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64\n",
        "usr/lib/aarch64-linux-gnu/libtensorflowlite_gpu_delegate.so": b"\x7fELF",
    })
    d = detect(root=root, machine="aarch64", ov_devices=None)
    assert d.profile.name == "jetson-orin-nano"
    text = " ".join(d.reasons)
    assert "Orin Nano" in text and "R36" in text
    assert d.facts.delegates["gpu"].endswith("libtensorflowlite_gpu_delegate.so")
    assert d.scores["jetson-orin-nano"] > d.scores.get("jetson-orin-nx", 0)


def test_detects_jetson_nano_from_l4t_r32(tmp_path):
    root = fake_tree(tmp_path, {"proc/device-tree/model": b"NVIDIA Jetson Nano Developer Kit\x00",
                                "etc/nv_tegra_release": "# R32 (release), REVISION: 7.4\n"})
    assert detect(root=root, machine="aarch64", ov_devices=None).profile.name == "jetson-nano"


@pytest.mark.parametrize("cpu, want", [("Intel(R) Core(TM) Ultra 7 155H", "core-ultra-meteor-lake"),
                                       ("Intel(R) Core(TM) Ultra 7 258V", "core-ultra-lunar-lake"),
                                       ("AMD EPYC 7B13", "generic-x86-64")])
def test_detects_core_ultra_from_cpuinfo_and_openvino_devices(tmp_path, cpu, want):
    root = fake_tree(tmp_path, {"proc/cpuinfo": f"processor\t: 0\nmodel name\t: {cpu}\n"})
    d = detect(root=root, machine="x86_64", ov_devices=["CPU", "GPU.0", "NPU"])
    assert d.profile.name == want
    if want != "generic-x86-64":
        assert any("OpenVINO shows NPU" in r for r in d.reasons)


def test_core_ultra_without_npu_driver_says_so(tmp_path):
    root = fake_tree(tmp_path, {"proc/cpuinfo": "model name\t: Intel(R) Core(TM) Ultra 5 125U\n"})
    d = detect(root=root, machine="x86_64", ov_devices=["CPU"])
    assert d.profile.name == "core-ultra-meteor-lake"
    assert any("does not show NPU" in r for r in d.reasons)


def test_unknown_architecture_is_a_clear_error(tmp_path):
    with pytest.raises(ProfileError, match="no device profile matches"):
        detect(root=tmp_path, profiles=load_profiles([BUILTIN_DIR]), machine="s390x", ov_devices=None)


def test_gather_on_empty_tree_is_empty_not_an_error(tmp_path):
    f = gather(tmp_path, machine="x86_64", ov_devices=None)
    assert (f.device_tree_model, f.tegra_release, f.cpu_model, f.delegates) == ("", "", "", {})


def _cli(*args):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True, timeout=60)


def test_cli_devices_lists_profiles_and_detects_with_reasons():
    r = _cli("devices")
    assert r.returncode == 0, r.stderr
    for name in EXPECTED:
        assert name in r.stdout
    here = detect()  # this machine, in-process: the CLI must say the same
    r = _cli("devices", "detect", "--explain")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(here.profile.name + ":")
    assert here.reasons[0] in r.stdout and "OpenVINO devices" in r.stdout and "preference order" in r.stdout
    r = _cli("devices", "detect", "--json")
    doc = json.loads(r.stdout)
    assert doc["profile"] == here.profile.name and doc["facts"]["machine"] == here.facts.machine


def test_cli_bad_user_profile_is_one_line_exit_2(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\ndescription = "d"\n[[prefer]]\nformat = "tflite"\n'
                                       'precision = "fp32"\nbackend = "litert"\naccelerator = "tpu"\n')
    env = dict(os.environ, EDGE_POSE_DEVICES_DIR=str(tmp_path))
    r = subprocess.run([str(ROOT / ".venv/bin/edge-pose"), "devices"], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.toml: prefer[0].accelerator: 'tpu'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
