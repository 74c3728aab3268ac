"""The shipped weights: this folder installs as the package data `nrkdeblur.pretrained`."""
