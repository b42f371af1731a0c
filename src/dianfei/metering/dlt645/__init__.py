"""DL/T 645-2007: frames, TCP client, meter simulator."""
