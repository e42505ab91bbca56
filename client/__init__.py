"""gradserve: PyTorch's autograd API, recorded locally and computed by a gradient service."""
