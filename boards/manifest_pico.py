# Freeze the BecomingONE firmware into your own MicroPython image for the Raspberry Pi Pico.
# MicroPython manifest format (micropython/tools/manifestfile.py); relative paths are relative
# to this file's folder. Build (in a MicroPython checkout):
#
#   cd micropython/ports/rp2
#   make BOARD=RPI_PICO FROZEN_MANIFEST=/path/to/becomingone-edge/boards/manifest_pico.py
#
# flash the .uf2 (hold BOOTSEL, plug in, copy build-RPI_PICO/firmware.uf2), then provision the
# board without copying code (board config, device key, main.py):
#
#   becomingone flash --board pico --port /dev/ttyACM0 --config-only
#
# Frozen modules run from flash (no RAM for their bytecode) and are compiled for the image's
# own architecture (armv6m) by the build.

# the rp2 port's own frozen modules (asyncio, rp2, _boot, ...)
include("$(PORT_DIR)/boards/manifest.py")

package("shared", base_path="..")
package("device", base_path="..")
package("boards", files=("__init__.py", "pico.py"), base_path="..")
