# BeagleBone Black (AM3358, 1x Cortex-A8 with NEON), 512 MB RAM, eMMC.
BOARD_DESC        := BeagleBone Black
BOARD_ARCH        := armv7
BOARD_CPU         := cortex-a8
BOARD_ABI         := ilp32 (EABI hard-float)
BOARD_TRIPLE      := arm-linux-musleabihf
BOARD_CROSS       := arm-linux-gnueabihf-
BOARD_MUSL_SPECS  := /usr/lib/arm-linux-musleabihf/musl-gcc.specs
BOARD_CPU_FLAGS   := -mcpu=cortex-a8 -mfpu=neon -mfloat-abi=hard -mthumb
BOARD_CMAKE_PROC  := armv7l
BOARD_QEMU        := qemu-arm-static -cpu cortex-a8
BOARD_SIZE_BUDGET := 716800
BOARD_SPOOL_DIR       := /var/lib/edgetrace/spool
BOARD_SPOOL_MAX_BYTES := 8388608
BOARD_SAMPLE_INTERVAL_S := 60
BOARD_DEEP_INTERVAL_S   := 1800
