"""Runs the C unit tests (cmocka) as part of the one pytest summary:
- on the host, built with ASan + UBSan (build/host-asan/test_*);
- cross-compiled with musl for an aarch64 and a 32-bit armv7 board, under qemu-user,
  which catches time_t, size_t and alignment bugs the 64-bit host hides;
- every libFuzzer target over its seed corpus plus a short bounded fuzzing run."""
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, board_var

HOST_TESTS = sorted((BUILD / "host-asan").glob("test_*"))
QEMU_BOARDS = ["rpi4", "bbb"]
CROSS_TESTS = [(b, p) for b in QEMU_BOARDS for p in sorted((BUILD / b / "unit").glob("test_*"))]
FUZZERS = sorted(p for p in (BUILD / "fuzz").glob("fuzz_*") if p.is_file() and os.access(p, os.X_OK))


def run_cmocka(argv, cwd):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert out.returncode == 0, f"{argv[-1]} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    assert "[  PASSED  ]" in out.stdout or "[  PASSED  ]" in out.stderr, out.stdout[-2000:]


def test_unit_tests_exist():
    expected = sorted(p.stem for p in (ROOT / "tests" / "unit").glob("test_*.c"))
    assert [p.name for p in HOST_TESTS] == expected


@pytest.mark.parametrize("binary", HOST_TESTS, ids=lambda p: p.name)
def test_unit_host_asan_ubsan(binary):
    # From the repository root: tests read their fixtures from tests/fixtures/.
    run_cmocka([str(binary)], ROOT)


@pytest.mark.parametrize("board,binary", CROSS_TESTS, ids=lambda v: v if isinstance(v, str) else v.name)
def test_unit_under_qemu(board, binary):
    run_cmocka(shlex.split(board_var(board, "BOARD_QEMU")) + [str(binary)], ROOT)


@pytest.mark.parametrize("fuzzer", FUZZERS, ids=lambda p: p.name)
def test_fuzz_target_smoke(fuzzer, tmp_path):
    """Seed corpus replay, then a bounded run from it: any crash, leak or UB fails."""
    name = fuzzer.name
    corpus = ROOT / "tests" / "fuzz" / "corpus"
    seeds = next((d for d in (corpus / name, corpus / name.removeprefix("fuzz_")) if d.is_dir()), corpus / name)
    work = tmp_path / "corpus"
    work.mkdir()
    # -rss_limit_mb=0: libFuzzer's RSS check reads the peak RSS, which a child inherits from
    # the forking pytest process; the malloc limit still catches runaway allocations.
    args = [str(fuzzer), f"-max_total_time={os.environ.get('ET_FUZZ_SECONDS', '15')}", "-rss_limit_mb=0",
            "-malloc_limit_mb=1024",
            "-timeout=10", f"-artifact_prefix={tmp_path}/", str(work)]
    if seeds.is_dir():
        args.append(str(seeds))
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
