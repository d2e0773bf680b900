# Freeze the BecomingONE firmware into your own MicroPython image for the Raspberry Pi Pico W.
# MicroPython manifest format (micropython/tools/manifestfile.py); relative paths are relative
# to this file's folder. Build (in a MicroPython checkout, with the cyw43 submodules):
#
#   cd micropython/ports/rp2
#   make BOARD=RPI_PICO_W submodules
#   make BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/becomingone-edge/boards/manifest_pico_w.py
#
# flash the .uf2, then provision the board without copying code (board config, device key,
# Wi-Fi credentials from a file outside the repository or the environment, main.py):
#
#   becomingone flash --board pico_w --port /dev/ttyACM0 --config-only \
#       --host-url udp://192.168.1.20:18790 --wifi-file ~/wifi.json

# the Pico W board's own manifest: the rp2 port's modules plus networking (network, ...)
include("$(BOARD_DIR)/manifest.py")

package("shared", base_path="..")
package("device", base_path="..")
package("boards", files=("__init__.py", "pico_w.py", "pico.py"), base_path="..")  # pico_w builds on pico
