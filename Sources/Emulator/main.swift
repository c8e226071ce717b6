runEmulator()
