# Raspberry Pi 3 (BCM2837, 4x Cortex-A53) running a 32-bit armhf OS.
BOARD_DESC        := Raspberry Pi 3, 32-bit armhf
BOARD_ARCH        := armv7
BOARD_CPU         := cortex-a53 (AArch32)
BOARD_ABI         := ilp32 (EABI hard-float)
BOARD_TRIPLE      := arm-linux-musleabihf
BOARD_CROSS       := arm-linux-gnueabihf-
BOARD_MUSL_SPECS  := /usr/lib/arm-linux-musleabihf/musl-gcc.specs
BOARD_CPU_FLAGS   := -march=armv7-a -mtune=cortex-a53 -mfpu=neon-vfpv4 -mfloat-abi=hard -mthumb
BOARD_CMAKE_PROC  := armv7l
BOARD_QEMU        := qemu-arm-static -cpu cortex-a15
BOARD_SIZE_BUDGET := 716800
BOARD_SPOOL_DIR       := /var/lib/edgetrace/spool
BOARD_SPOOL_MAX_BYTES := 16777216
BOARD_SAMPLE_INTERVAL_S := 30
BOARD_DEEP_INTERVAL_S   := 900
