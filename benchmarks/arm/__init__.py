"""edgecxr on emulated Raspberry Pi OS userlands (aarch64, armv7l): install, parity with x86-64, EMULATED timings. See check.sh."""
