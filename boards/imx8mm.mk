# NXP i.MX 8M Mini (4x Cortex-A53): the industrial gateway class. Often eMMC or a
# slow SD card, so the spool is smaller and the deep-sample interval longer.
BOARD_DESC        := NXP i.MX 8M Mini industrial gateway
BOARD_ARCH        := aarch64
BOARD_CPU         := cortex-a53
BOARD_ABI         := lp64 (AAPCS64)
BOARD_TRIPLE      := aarch64-linux-musl
BOARD_CROSS       := aarch64-linux-gnu-
BOARD_MUSL_SPECS  := /usr/lib/aarch64-linux-musl/musl-gcc.specs
BOARD_CPU_FLAGS   := -mcpu=cortex-a53
BOARD_CMAKE_PROC  := aarch64
BOARD_QEMU        := qemu-aarch64-static -cpu cortex-a53
BOARD_SIZE_BUDGET := 1048576
BOARD_SPOOL_DIR       := /var/lib/edgetrace/spool
BOARD_SPOOL_MAX_BYTES := 16777216
BOARD_SAMPLE_INTERVAL_S := 30
BOARD_DEEP_INTERVAL_S   := 900
