# Generic x86_64 gateway PC (any x86-64-v1 CPU).
BOARD_DESC        := generic x86_64 gateway PC
BOARD_ARCH        := x86_64
BOARD_CPU         := x86-64
BOARD_ABI         := lp64 (SysV)
BOARD_TRIPLE      := x86_64-linux-musl
# Compiler prefix: x86_64 uses the host gcc with musl's specs.
BOARD_CROSS       :=
BOARD_MUSL_SPECS  := /usr/lib/x86_64-linux-musl/musl-gcc.specs
BOARD_CPU_FLAGS   := -march=x86-64 -mtune=generic
BOARD_CMAKE_PROC  := x86_64
BOARD_QEMU        :=
# Stripped agent size budget in bytes.
BOARD_SIZE_BUDGET := 1048576
# Agent defaults for this board (overridable in edgetrace.conf).
BOARD_SPOOL_DIR       := /var/lib/edgetrace/spool
BOARD_SPOOL_MAX_BYTES := 67108864
BOARD_SAMPLE_INTERVAL_S := 30
BOARD_DEEP_INTERVAL_S   := 600
