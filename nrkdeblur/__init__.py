"""nrkdeblur: defocus deblurring with NRKNet (Quan, Wu, Ji, CVPR 2023).

The Python API (api.py), imported on first use so that `import nrkdeblur` stays light:

    deblurrer = nrkdeblur.load(weights=None, device="auto")
    sharp = deblurrer.deblur(image)          # numpy array or PIL image
    nrkdeblur.deblur_file("in.jpg", "out.jpg")
    nrkdeblur.report("shoot/", "sharp/", "sharp/report.html")   # batch + before/after page
"""

from .version import __version__
__all__ = ["Deblurrer", "__version__", "deblur_file", "load", "report"]

_API = ("Deblurrer", "deblur_file", "load", "report")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'nrkdeblur' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
