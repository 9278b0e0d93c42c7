# Raspberry Pi 4 (BCM2711, 4x Cortex-A72) running a 64-bit OS.
BOARD_DESC        := Raspberry Pi 4, 64-bit
BOARD_ARCH        := aarch64
BOARD_CPU         := cortex-a72
BOARD_ABI         := lp64 (AAPCS64)
BOARD_TRIPLE      := aarch64-linux-musl
BOARD_CROSS       := aarch64-linux-gnu-
BOARD_MUSL_SPECS  := /usr/lib/aarch64-linux-musl/musl-gcc.specs
BOARD_CPU_FLAGS   := -mcpu=cortex-a72
BOARD_CMAKE_PROC  := aarch64
BOARD_QEMU        := qemu-aarch64-static -cpu cortex-a72
BOARD_SIZE_BUDGET := 1048576
BOARD_SPOOL_DIR       := /var/lib/edgetrace/spool
BOARD_SPOOL_MAX_BYTES := 33554432
BOARD_SAMPLE_INTERVAL_S := 30
BOARD_DEEP_INTERVAL_S   := 600
