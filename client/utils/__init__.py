"""`torch.utils` (only what autograd needs: hooks)."""
