"""nrkdeblur: defocus deblurring with NRKNet (Quan, Wu, Ji, CVPR 2023)."""

__version__ = "0.1.0"
