"""dianfei (电费): an open-source meter-to-cash platform for power supply companies."""

__version__ = "0.1.0"
