"""The build is a product feature: every board's agent must be a static binary of the right
architecture that runs (under qemu-user for ARM) and fits its size budget."""
import subprocess

import pytest

from conftest import BOARDS, BUILD, agent_cmd, board_var

ARCH_FILE = {"x86_64": "x86-64", "aarch64": "ARM aarch64", "armv7": "ARM, EABI5"}


@pytest.mark.parametrize("board", BOARDS)
def test_agent_is_static_for_board(board):
    binary = BUILD / board / "edgetrace-agent"
    assert binary.exists(), f"{binary} missing: make BOARD={board}"
    desc = subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "statically linked" in desc
    assert ARCH_FILE[board_var(board, "BOARD_ARCH")] in desc, desc
    assert "stripped" in desc and "not stripped" not in desc
    # the unstripped copy stays beside it for crash analysis
    dbg = subprocess.run(["file", "-b", str(binary) + ".debug"], capture_output=True, text=True, check=True).stdout
    assert "not stripped" in dbg


@pytest.mark.parametrize("board", BOARDS)
def test_agent_version_runs_on_board(board):
    out = subprocess.run(agent_cmd(board) + ["--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"board: {board}" in out.stdout
    assert "libcoap 4.3.5" in out.stdout and "mbedTLS 3.6" in out.stdout
    assert "zstd 1.5.7" in out.stdout and "zlib 1.3.1" in out.stdout


@pytest.mark.parametrize("board", BOARDS)
def test_agent_within_size_budget(board):
    size = (BUILD / board / "edgetrace-agent").stat().st_size
    assert size <= int(board_var(board, "BOARD_SIZE_BUDGET")), f"{board}: {size} bytes"


def test_unknown_command_is_an_error():
    out = subprocess.run(agent_cmd() + ["frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown command" in out.stderr
