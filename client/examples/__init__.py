"""Runnable examples shipped with gradserve: `python -m gradserve.examples.autograd_tutorial`."""
